//! A value per park slot, written by each thread as it parks and read by
//! the capture (once every thread is parked) and by the restarted thread
//! of that slot (the table lies in the library's memory, which the image
//! holds). For the per-thread state the kernel gives only to the thread
//! itself (`kstate::credentials`, `kstate::sched`).
//!
//! Runs while other threads are parked, or in a restarted thread before
//! release: no allocation, no lock.

use super::park::MAX_THREADS;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering::*};

pub struct SlotTable<T: Copy> {
    noted: [AtomicBool; MAX_THREADS],
    values: UnsafeCell<[T; MAX_THREADS]>,
}

// SAFETY: slot i is written only by the thread that claimed park slot i,
// before `noted[i]` is published (Release), and read only after it is
// seen (Acquire): by the capture once every thread parked, or by that
// same thread after a restart.
unsafe impl<T: Copy> Sync for SlotTable<T> {}

impl<T: Copy> SlotTable<T> {
    pub const fn new(zero: T) -> Self {
        SlotTable {
            noted: [const { AtomicBool::new(false) }; MAX_THREADS],
            values: UnsafeCell::new([zero; MAX_THREADS]),
        }
    }

    /// The thread of park slot `i` notes its value (None: it could not be
    /// read). No allocation.
    pub fn note(&self, i: usize, v: Option<T>) {
        if i >= MAX_THREADS {
            return;
        }
        if let Some(v) = v {
            // SAFETY: see `SlotTable`: slot i is the caller's.
            unsafe { (*self.values.get())[i] = v };
        }
        self.noted[i].store(v.is_some(), Release);
    }

    /// What slot `i` noted, if it did.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= MAX_THREADS || !self.noted[i].load(Acquire) {
            return None;
        }
        // SAFETY: see `SlotTable`: published by the slot's thread.
        Some(unsafe { (*self.values.get())[i] })
    }

    /// The parked threads' noted values in image order, each with the
    /// thread's id as the program knows it.
    pub fn parked(&self) -> impl Iterator<Item = (u32, T)> + Clone + '_ {
        super::park::parked_indices_in_image_order()
            .filter_map(|(i, tid)| self.get(i).map(|v| (tid, v)))
    }
}
