//! Huge pages for staging. Faulting fresh memory in page by page is most of
//! a restart's kernel time (allocation, zeroing, accounting, LRU: about
//! 0.4 s per GiB on the project VM). Where the image fills 2 MiB blocks of
//! anonymous memory completely, the staging mapping can take them as
//! transparent huge pages instead: the same memory, one allocation per
//! block instead of 512.
//!
//! Huge-page advice is per mapping (advice on part of one splits it, and
//! the restorer moves each region with one mremap), and with advice every
//! block touched gets a whole huge page, even one the image fills with a
//! single page. So [`plan`] looks first at where the image's chunks go
//! ([`crate::image::peek`]); a region with at least one block the image
//! fills completely is staged like this: one page of every block the image
//! fills only partly is faulted in first, as an ordinary page (that gives
//! the block a page table, and later faults in it stay ordinary pages);
//! then the whole mapping is advised, and the decoders fault every full
//! block in as one huge page. Memory is exactly what the image holds (one
//! caveat: while the advice is on, during staging, khugepaged may collapse
//! a partly filled block, which its default `max_ptes_none` allows; the
//! `MADV_NOHUGEPAGE` after staging ends that window, and the tests saw no
//! collapse).
//!
//! Only with the kernel's THP mode `madvise` (with `always`, staging gets
//! huge pages without advice; with `never`, none). After staging the
//! advised regions get `MADV_NOHUGEPAGE`, which in `madvise` mode behaves
//! for the program's later faults like no advice at all.
//!
//! Not by default in a VM whose balloon reports free pages to the
//! hypervisor (virtio-balloon `VIRTIO_BALLOON_F_REPORTING`): the guest hands
//! back exactly its free 2 MiB blocks, a huge page is taken from one of
//! them, and every one of its pages then costs the host a fault. On the
//! project VM that made a 256 MiB restart 3–4× slower instead of faster
//! (BENCHMARKS.md). `SELFCKPT_RESTART_THP=1` asks for huge pages anyway,
//! `SELFCKPT_RESTART_THP=0` never.
//!
//! Ordinary Rust on the restarter's side: advises only staging mappings.

use super::layout::StagedRegion;
use crate::capture::maps::RegionKind;

/// The size of a transparent huge page with 4 KiB pages (x86_64, and
/// aarch64 with 4 KiB pages).
pub const BLOCK: u64 = 2 << 20;

/// Whether staging should ask for huge pages on this system.
/// `forced` is `SELFCKPT_RESTART_THP` (`None`: decide from the system).
pub fn wanted(page: u64, forced: Option<bool>) -> bool {
    if page != 4096 || forced == Some(false) {
        return false;
    }
    let madvise = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[madvise]"));
    madvise && (forced == Some(true) || !free_page_reporting())
}

/// Whether a virtio balloon driver that reports free pages to the
/// hypervisor is bound.
fn free_page_reporting() -> bool {
    let Ok(devices) = std::fs::read_dir("/sys/bus/virtio/devices") else {
        return false;
    };
    devices.flatten().any(|d| {
        let p = d.path();
        let driver = std::fs::read_link(p.join("driver")).unwrap_or_default();
        driver.file_name().is_some_and(|n| n == "virtio_balloon")
            && std::fs::read_to_string(p.join("features")).is_ok_and(|f| reports_free_pages(&f))
    })
}

/// Whether a virtio-balloon feature string (one `0`/`1` per feature bit,
/// bit 0 first, as in sysfs) has `VIRTIO_BALLOON_F_REPORTING` (bit 5).
fn reports_free_pages(features: &str) -> bool {
    features.as_bytes().get(5) == Some(&b'1')
}

/// Whether a region of this kind and length may be staged with huge pages:
/// private anonymous memory of at least one block (stacks grow down and
/// shared memory follows other rules).
pub fn eligible(kind: RegionKind, len: u64) -> bool {
    matches!(kind, RegionKind::Anon | RegionKind::Heap) && len >= BLOCK
}

/// How to stage one region with huge pages: the pages (index from the
/// region's start) to fault in as ordinary pages before the advice, one in
/// every block the image fills only partly.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HugePlan {
    pub first_faults: Vec<u64>,
}

/// Per region, whether and how to stage it with huge pages: eligible, and
/// at least one block the image fills completely. `runs` are (region,
/// first page, pages) in file order, as [`crate::image::peek::chunk_runs`]
/// gives them; runs out of order or outside their region mean no advice
/// for that region.
pub fn plan(
    regions: &[StagedRegion],
    page: u64,
    runs: impl FnOnce(&mut dyn FnMut(u32, u64, u64)),
) -> Vec<Option<HugePlan>> {
    #[derive(Default)]
    struct Tally {
        /// The block being counted (by index from address 0), its first
        /// stored page and its page count.
        block: Option<(u64, u64, u64)>,
        full: u64,
        partial: Vec<u64>,
        broken: bool,
    }
    let per = BLOCK / page;
    let close = |t: &mut Tally| {
        if let Some((_, first, n)) = t.block.take() {
            if n == per {
                t.full += 1;
            } else {
                t.partial.push(first);
            }
        }
    };
    let mut tally: Vec<Tally> = regions.iter().map(|_| Tally::default()).collect();
    runs(&mut |region, first, pages| {
        let Some(r) = regions.get(region as usize) else {
            return;
        };
        let t = &mut tally[region as usize];
        if t.broken || !eligible(r.kind, r.end - r.start) {
            return;
        }
        let base = r.start / page;
        let start = base.saturating_add(first);
        let end = start.saturating_add(pages);
        if end > r.end / page {
            t.broken = true;
            return;
        }
        let mut p = start;
        while p < end {
            let b = p / per;
            let upto = ((b + 1) * per).min(end);
            match &mut t.block {
                Some((cur, _, n)) if *cur == b => *n += upto - p,
                Some((cur, _, _)) if *cur > b => t.broken = true,
                _ => {
                    close(t);
                    t.block = Some((b, p - base, upto - p));
                }
            }
            p = upto;
        }
    });
    tally
        .into_iter()
        .map(|mut t| {
            close(&mut t);
            (!t.broken && t.full > 0).then_some(HugePlan {
                first_faults: t.partial,
            })
        })
        .collect()
}

/// Stages one region for huge pages (see the module comment): faults in
/// the plan's pages, then advises the whole mapping at `at`. Advice is only
/// a hint: failures are ignored (the pages are then ordinary).
pub fn prepare(at: u64, len: u64, page: u64, plan: &HugePlan) {
    for &p in &plan.first_faults {
        // SAFETY: one page inside the staging mapping at `at` (the plan's
        // pages lie inside the region), which this restarter made and
        // nothing else uses.
        unsafe {
            libc::madvise(
                (at + p * page) as *mut libc::c_void,
                page as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
    advise(at, len, libc::MADV_HUGEPAGE);
}

/// Gives a staging mapping `advice` (`MADV_HUGEPAGE` before it is filled,
/// `MADV_NOHUGEPAGE` after). Advice is only a hint: failure is ignored.
pub fn advise(at: u64, len: u64, advice: i32) {
    // SAFETY: advice on a whole staging mapping this restarter made and
    // nothing else uses.
    unsafe { libc::madvise(at as *mut libc::c_void, len as usize, advice) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, len: u64, kind: RegionKind) -> StagedRegion {
        StagedRegion {
            start,
            end: start + len,
            prot: 3,
            kind,
            staging: None,
        }
    }

    fn decide(regions: &[StagedRegion], runs: &[(u32, u64, u64)]) -> Vec<Option<HugePlan>> {
        plan(regions, 4096, |f| {
            for &(r, first, pages) in runs {
                f(r, first, pages)
            }
        })
    }

    const MIB: u64 = 1 << 20;

    fn faults(v: &[u64]) -> Option<HugePlan> {
        Some(HugePlan {
            first_faults: v.to_vec(),
        })
    }

    #[test]
    fn regions_with_a_full_block_get_huge_pages_partial_blocks_are_faulted_first() {
        // One page past a block boundary: page k of the region is page
        // k + 1 of its block.
        let at = 0x7f00_0000_0000u64 + 4096;
        let regions = [
            region(at, 64 * MIB, RegionKind::Anon),
            region(at + 128 * MIB, 8 * MIB, RegionKind::Anon),
            region(at + 256 * MIB, 64 * MIB, RegionKind::Stack),
            region(at + 512 * MIB, MIB, RegionKind::Heap),
            region(at + 768 * MIB, 64 * MIB, RegionKind::Heap),
        ];
        let mut runs = Vec::new();
        // 40 MiB in 1 MiB chunks: 19 whole blocks; the partial ones are
        // the first (pages 0..511) and the last (page 10_239 only).
        for k in 0..40 {
            runs.push((0, k * 256, 256));
        }
        runs.extend_from_slice(&[
            // A few scattered pages: no whole block.
            (1, 3, 1),
            (1, 700, 2),
            // Dense but a stack.
            (2, 0, 16 * 256),
            // Dense but smaller than a block.
            (3, 0, 256),
            // Dense 32 MiB, then pages in two other blocks.
            (4, 0, 32 * 256),
            (4, 10_000, 1),
            (4, 10_001, 3),
            (4, 12_000, 1),
        ]);
        let got = decide(&regions, &runs);
        assert_eq!(got[0], faults(&[0, 10_239]));
        assert_eq!(got[1..4], [None, None, None]);
        assert_eq!(got[4], faults(&[0, 8_191, 10_000, 12_000]));
    }

    #[test]
    fn the_balloon_reporting_bit_is_bit_5() {
        // This VM's balloon: stats, deflate on OOM, free page reporting.
        assert!(reports_free_pages(
            "0110010100000000000000000000000010000000"
        ));
        assert!(!reports_free_pages(
            "0110000100000000000000000000000010000000"
        ));
        assert!(!reports_free_pages("0110"));
    }

    #[test]
    fn out_of_order_or_out_of_region_runs_mean_no_advice() {
        let regions = [region(0x4000_0000, 64 * MIB, RegionKind::Anon)];
        assert_eq!(decide(&regions, &[(0, 0, 4096)]), [faults(&[])]);
        assert_eq!(decide(&regions, &[(0, 2048, 2048), (0, 0, 2048)]), [None]);
        assert_eq!(decide(&regions, &[(0, 0, 4096), (0, 16_380, 100)]), [None]);
        assert_eq!(decide(&regions, &[(7, 0, 4096)]), [None]);
    }
}
