//! Which pages of a region carry data, and a zero-page test that runs at
//! memory speed.
//!
//! Two ways to ask the kernel, chosen once when the scanner is opened:
//!
//! ```text
//! PAGEMAP_SCAN ioctl (kernel >= 6.7)   one call per range; the kernel walks
//!                                      the page tables and returns runs
//!                                      (start, end, categories); unpopulated
//!                                      page tables cost nothing
//! /proc/self/pagemap reads (fallback)  8 bytes per page: bit 63 present,
//!                                      62 swapped, 61 file-backed/shared
//! ```
//!
//! With PAGEMAP_SCAN, present pages that map the shared zero page (read but
//! never written: `PAGE_IS_PFNZERO`) are left out as well, since they read
//! back as zero from fresh anonymous memory. `SELFCKPT_PAGEMAP_SCAN=0` in
//! the environment forces the pagemap reads (tests, kernels that misbehave).
//!
//! Runs while the program's threads are suspended: never allocates, never
//! locks; the caller passes every buffer.

use crate::capture::sys::RawFd;

/// A run of consecutive pages that carry data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageRun {
    pub addr: u64,
    pub pages: u64,
}

/// Which pages of a region the image needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Anonymous memory: every present or swapped page (not the zero page).
    AnonData,
    /// A private file mapping: only pages written since they were mapped
    /// (anonymous copies); clean pages come from the file at restart.
    PrivateFileWritten,
    /// Every resident page (shared anonymous memory, deleted files).
    AllResident,
}

/// Why a scan failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PagesError {
    #[error("the run buffer is full; resume the scan at {resume_at:#x}")]
    OutOfRuns { resume_at: u64 },
    #[error("cannot read /proc/self/pagemap (errno {0})")]
    Io(i32),
    #[error("the PAGEMAP_SCAN ioctl failed (errno {0})")]
    Scan(i32),
}

/// How the scanner asks the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanMethod {
    /// The PAGEMAP_SCAN ioctl.
    Ioctl,
    /// Reading /proc/self/pagemap entries.
    PagemapRead,
}

// From the kernel UAPI (include/uapi/linux/fs.h); absent from the installed
// headers and from the libc crate.
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`: one run reported by PAGEMAP_SCAN.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 =
    (3 << 30) | ((core::mem::size_of::<PmScanArg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;

/// Bytes of one PAGEMAP_SCAN output entry.
#[cfg(test)]
const REGION_LEN: usize = core::mem::size_of::<PageRegion>();

/// Finds the pages that carry data.
pub struct PageScanner {
    fd: RawFd,
    method: ScanMethod,
}

impl PageScanner {
    /// Opens /proc/self/pagemap and picks PAGEMAP_SCAN when `allow_scan`
    /// and the kernel answers it (`SELFCKPT_PAGEMAP_SCAN=0` makes callers
    /// pass false). Call before suspending (opens a file).
    pub fn open(allow_scan: bool) -> Result<Self, PagesError> {
        let mut s = Self::open_with(ScanMethod::PagemapRead)?;
        if allow_scan && s.probe_ioctl() {
            s.method = ScanMethod::Ioctl;
        }
        Ok(s)
    }

    /// Opens the scanner with a given method (tests, benchmarks).
    pub fn open_with(method: ScanMethod) -> Result<Self, PagesError> {
        let fd = RawFd::open(
            b"/proc/thread-self/pagemap\0",
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| PagesError::Io(e.0))?;
        Ok(PageScanner { fd, method })
    }

    /// How this scanner asks the kernel.
    pub fn method(&self) -> ScanMethod {
        self.method
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.raw()
    }

    /// Whether PAGEMAP_SCAN works here (one call over a page of our stack).
    fn probe_ioctl(&self) -> bool {
        let probe = 0u64;
        let page = crate::capture::sys::page_size() as u64;
        let at = core::ptr::addr_of!(probe) as u64 / page * page;
        let mut out = [PageRegion::default(); 1];
        self.ioctl_scan(at, at + page, Want::AnonData, &mut out)
            .is_ok()
    }

    /// One PAGEMAP_SCAN call: fills `out` with the runs of [start, end)
    /// that `want` needs; returns how many and where the walk stopped.
    fn ioctl_scan(
        &self,
        start: u64,
        end: u64,
        want: Want,
        out: &mut [PageRegion],
    ) -> Result<(usize, u64), PagesError> {
        let (mask, inverted) = match want {
            // Not the shared zero page.
            Want::AnonData => (PAGE_IS_PFNZERO, PAGE_IS_PFNZERO),
            // Not a page of the file itself (page cache): written copies only.
            Want::PrivateFileWritten => (PAGE_IS_FILE, PAGE_IS_FILE),
            Want::AllResident => (0, 0),
        };
        let mut arg = PmScanArg {
            size: core::mem::size_of::<PmScanArg>() as u64,
            start,
            end,
            vec: out.as_mut_ptr() as u64,
            vec_len: out.len() as u64,
            category_inverted: inverted,
            category_mask: mask,
            category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            ..PmScanArg::default()
        };
        // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points at
        // `out.len()` writable page_region entries; the kernel writes no
        // more than vec_len of them and updates walk_end.
        let r =
            unsafe { libc::ioctl(self.fd.raw(), PAGEMAP_SCAN as _, &mut arg as *mut PmScanArg) };
        if r < 0 {
            return Err(PagesError::Scan(crate::capture::sys::Errno::last().0));
        }
        Ok(((r as usize).min(out.len()), arg.walk_end))
    }

    /// Fills `out` with the runs of [start, end) that `want` needs, merged
    /// where adjacent. `tmp` is working space (at least 4 KiB helps).
    /// `Err(OutOfRuns)` says where to resume when `out` is full; the runs
    /// found so far are all in `out`.
    pub fn scan(
        &self,
        start: u64,
        end: u64,
        want: Want,
        out: &mut [PageRun],
        tmp: &mut [u8],
    ) -> Result<usize, PagesError> {
        match self.method {
            ScanMethod::Ioctl => self.scan_ioctl(start, end, want, out, tmp),
            ScanMethod::PagemapRead => self.scan_read(start, end, want, out, tmp),
        }
    }

    fn scan_ioctl(
        &self,
        start: u64,
        end: u64,
        want: Want,
        out: &mut [PageRun],
        tmp: &mut [u8],
    ) -> Result<usize, PagesError> {
        // SAFETY: PageRegion is plain u64s, any bit pattern is valid;
        // align_to_mut yields the correctly aligned middle part.
        let (_, regions, _) = unsafe { tmp.align_to_mut::<PageRegion>() };
        if regions.is_empty() {
            return self.scan_read(start, end, want, out, tmp);
        }
        let page = crate::capture::sys::page_size() as u64;
        let mut n = 0usize;
        let mut at = start;
        while at < end {
            let room = regions.len().min(out.len() - n + 1).max(1);
            let (got, walk_end) = self.ioctl_scan(at, end, want, &mut regions[..room])?;
            // The kernel fills the vector through an internal buffer and
            // may report a walk_end before the end of the regions it
            // returned (seen on 6.18 past 512 regions): resume after
            // whichever is further, and never take a page twice.
            let mut next = walk_end.max(at);
            for r in &regions[..got] {
                let r_start = r.start.max(at);
                if r.end <= r_start {
                    continue;
                }
                next = next.max(r.end);
                at = r.end;
                let r = PageRegion {
                    start: r_start,
                    ..*r
                };
                let pages = (r.end - r.start) / page;
                if n > 0 && out[n - 1].addr + out[n - 1].pages * page == r.start {
                    out[n - 1].pages += pages;
                    continue;
                }
                if n == out.len() {
                    return Err(PagesError::OutOfRuns { resume_at: r.start });
                }
                out[n] = PageRun {
                    addr: r.start,
                    pages,
                };
                n += 1;
            }
            if next <= at && got == 0 {
                break;
            }
            at = next;
        }
        Ok(n)
    }

    fn scan_read(
        &self,
        start: u64,
        end: u64,
        want: Want,
        out: &mut [PageRun],
        tmp: &mut [u8],
    ) -> Result<usize, PagesError> {
        let page = crate::capture::sys::page_size() as u64;
        let mut n = 0usize;
        let mut at = start;
        let per = tmp.len() / 8;
        while at < end {
            let cnt = (((end - at) / page) as usize).min(per);
            let got = self
                .fd
                .pread(&mut tmp[..cnt * 8], at / page * 8)
                .map_err(|e| PagesError::Io(e.0))?
                / 8;
            if got == 0 {
                break;
            }
            for (i, e) in tmp[..got * 8].chunks_exact(8).enumerate() {
                let mut word = [0u8; 8];
                word.copy_from_slice(e);
                let e = u64::from_ne_bytes(word);
                let present = e >> 63 & 1 == 1;
                let swapped = e >> 62 & 1 == 1;
                let file = e >> 61 & 1 == 1;
                let ok = match want {
                    Want::AnonData | Want::AllResident => present || swapped,
                    Want::PrivateFileWritten => (present && !file) || swapped,
                };
                if !ok {
                    continue;
                }
                let addr = at + i as u64 * page;
                if n > 0 && out[n - 1].addr + out[n - 1].pages * page == addr {
                    out[n - 1].pages += 1;
                    continue;
                }
                if n == out.len() {
                    return Err(PagesError::OutOfRuns { resume_at: addr });
                }
                out[n] = PageRun { addr, pages: 1 };
                n += 1;
            }
            at += got as u64 * page;
        }
        Ok(n)
    }
}

/// The pages of [start, end) of a shared mapping (shared anonymous
/// memory, memfd, tmpfs, System V segment) that hold data of the object
/// it maps: `mincore` answers for the object (its page cache), not for
/// this mapping's page tables, so a page written through another mapping
/// of the same object (an alias) is found here too. With `every`, every
/// page is taken (swap in use: a shared page swapped out is in no page
/// cache and `mincore` would miss it); the caller leaves out pages
/// that read as zero. `tmp` holds the `mincore` vector. No allocation.
pub fn resident_shared(
    start: u64,
    end: u64,
    every: bool,
    out: &mut [PageRun],
    tmp: &mut [u8],
) -> Result<usize, PagesError> {
    let page = crate::capture::sys::page_size() as u64;
    let mut n = 0usize;
    let mut at = start;
    let mut push = |addr: u64, pages: u64, n: &mut usize| {
        if *n > 0 && out[*n - 1].addr + out[*n - 1].pages * page == addr {
            out[*n - 1].pages += pages;
            return Ok(());
        }
        if *n == out.len() {
            return Err(PagesError::OutOfRuns { resume_at: addr });
        }
        out[*n] = PageRun { addr, pages };
        *n += 1;
        Ok(())
    };
    if every {
        push(start, (end - start) / page, &mut n)?;
        return Ok(n);
    }
    while at < end {
        let cnt = (((end - at) / page) as usize).min(tmp.len());
        // SAFETY: mincore reads no memory of ours but writes `cnt` bytes
        // into `tmp`, which has at least that many.
        let r = unsafe {
            libc::mincore(
                at as *mut libc::c_void,
                cnt * page as usize,
                tmp.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(PagesError::Io(crate::capture::sys::Errno::last().0));
        }
        for (i, &v) in tmp[..cnt].iter().enumerate() {
            if v & 1 != 0 {
                push(at + i as u64 * page, 1, &mut n)?;
            }
        }
        at += cnt as u64 * page;
    }
    Ok(n)
}

/// Whether any swap is in use (`SwapTotal` above `SwapFree` in
/// /proc/meminfo): only then can a shared page be swapped out, where
/// `mincore` would miss it. Reads into `tmp`; no allocation. Unknown:
/// assumed in use.
pub fn swap_in_use(tmp: &mut [u8]) -> bool {
    let Ok(n) = crate::capture::sys::read_file(b"/proc/meminfo\0", tmp) else {
        return true;
    };
    let text = &tmp[..n];
    let kb = |key: &[u8]| {
        crate::capture::sys::field(text, key)
            .and_then(crate::capture::sys::parse_u64)
            .map(|v| v.0)
    };
    match (kb(b"SwapTotal:"), kb(b"SwapFree:")) {
        (Some(total), Some(free)) => total > free,
        _ => true,
    }
}

/// Whether every byte of `p` is zero. Compares 256 bytes at a time as
/// words (the compiler turns the OR-reduction into SIMD) and stops at the
/// first block that is not zero, so a data page usually costs one block.
pub fn is_zero_page(p: &[u8]) -> bool {
    // SAFETY: u64 has no invalid bit patterns; align_to returns the
    // correctly aligned middle part and the unaligned ends as bytes.
    let (head, words, tail) = unsafe { p.align_to::<u64>() };
    if head.iter().chain(tail).any(|&b| b != 0) {
        return false;
    }
    words
        .chunks(32)
        .all(|block| block.iter().fold(0u64, |acc, &w| acc | w) == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_page_written_through_an_alias_is_found_in_the_other_mapping() {
        let page = crate::capture::sys::page_size();
        // SAFETY: test mappings of our own: a shared anonymous object of
        // four pages and an alias of it (mremap with old size 0).
        unsafe {
            let a = libc::mmap(
                core::ptr::null_mut(),
                4 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(a, libc::MAP_FAILED);
            let b = libc::mremap(a, 0, 4 * page, libc::MREMAP_MAYMOVE);
            assert_ne!(b, libc::MAP_FAILED);
            *(a as *mut u8).add(2 * page) = 7;
            let mut runs = [super::PageRun::default(); 8];
            let mut tmp = [0u8; 64];
            let n = super::resident_shared(
                b as u64,
                b as u64 + 4 * page as u64,
                false,
                &mut runs,
                &mut tmp,
            )
            .unwrap();
            assert_eq!(
                &runs[..n],
                &[super::PageRun {
                    addr: b as u64 + 2 * page as u64,
                    pages: 1
                }]
            );
            libc::munmap(a, 4 * page);
            libc::munmap(b, 4 * page);
        }
    }

    use super::*;

    const PAGE: usize = 4096;

    struct Mapping(*mut u8, usize);
    impl Mapping {
        fn anon(pages: usize) -> Mapping {
            // SAFETY: a private anonymous mapping used only by this test.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    pages * PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            Mapping(p.cast(), pages * PAGE)
        }
        fn base(&self) -> u64 {
            self.0 as u64
        }
        fn end(&self) -> u64 {
            self.0 as u64 + self.1 as u64
        }
        fn write(&self, page: usize, v: u8) {
            // SAFETY: inside the mapping.
            unsafe { self.0.add(page * PAGE).write_volatile(v) };
        }
        fn read(&self, page: usize) -> u8 {
            // SAFETY: inside the mapping.
            unsafe { self.0.add(page * PAGE).read_volatile() }
        }
    }
    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: unmapping the test's own mapping.
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    fn scanners() -> Vec<PageScanner> {
        let auto = PageScanner::open(true).unwrap();
        // This kernel (6.18) has PAGEMAP_SCAN: the probe must find it.
        assert_eq!(auto.method(), ScanMethod::Ioctl);
        vec![
            auto,
            PageScanner::open_with(ScanMethod::PagemapRead).unwrap(),
        ]
    }

    #[test]
    fn reports_exactly_the_touched_pages_with_both_methods() {
        let m = Mapping::anon(64);
        for i in [0usize, 1, 2, 10, 63] {
            m.write(i, 1);
        }
        let base = m.base();
        let want = [
            PageRun {
                addr: base,
                pages: 3,
            },
            PageRun {
                addr: base + 10 * PAGE as u64,
                pages: 1,
            },
            PageRun {
                addr: base + 63 * PAGE as u64,
                pages: 1,
            },
        ];
        for s in scanners() {
            let (mut out, mut tmp) = ([PageRun::default(); 8], vec![0u8; 4096]);
            let n = s
                .scan(base, m.end(), Want::AnonData, &mut out, &mut tmp)
                .unwrap();
            assert_eq!(&out[..n], &want, "{:?}", s.method());
            // With room for one run only, the scan resumes where it stopped.
            let mut one = [PageRun::default(); 1];
            match s.scan(base, m.end(), Want::AnonData, &mut one, &mut tmp) {
                Err(PagesError::OutOfRuns { resume_at }) => {
                    assert_eq!(resume_at, base + 10 * PAGE as u64, "{:?}", s.method());
                    assert_eq!(one[0], want[0]);
                }
                other => panic!("{:?}: expected OutOfRuns, got {other:?}", s.method()),
            }
        }
    }

    #[test]
    fn ioctl_output_smaller_than_the_runs_still_finds_them_all() {
        let m = Mapping::anon(256);
        for i in (0..256).step_by(2) {
            m.write(i, 7);
        }
        let s = PageScanner::open(true).unwrap();
        // Room for 3 page_regions per ioctl call: the scan must loop.
        let (mut out, mut tmp) = (vec![PageRun::default(); 200], vec![0u8; 3 * REGION_LEN]);
        let n = s
            .scan(m.base(), m.end(), Want::AnonData, &mut out, &mut tmp)
            .unwrap();
        assert_eq!(n, 128);
        assert!(out[..n].iter().all(|r| r.pages == 1));
    }

    #[test]
    fn many_runs_in_one_call_come_back_once_each_in_order() {
        // 1024 runs of two pages: more than the kernel's internal buffer.
        let m = Mapping::anon(3072);
        for i in 0..3072 {
            if i % 3 != 2 {
                m.write(i, (i % 3) as u8);
            }
        }
        for s in scanners() {
            let (mut out, mut tmp) = (vec![PageRun::default(); 4096], vec![0u8; 65536]);
            let n = s
                .scan(m.base(), m.end(), Want::AnonData, &mut out, &mut tmp)
                .unwrap();
            assert_eq!(n, 1024, "{:?}", s.method());
            for (i, r) in out[..n].iter().enumerate() {
                assert_eq!((r.addr, r.pages), (m.base() + (3 * i * PAGE) as u64, 2));
            }
        }
    }

    #[test]
    fn read_only_faulted_pages_are_the_zero_page_and_left_out_by_the_ioctl() {
        let m = Mapping::anon(8);
        assert_eq!(m.read(3), 0); // maps the shared zero page
        m.write(5, 1);
        let s = PageScanner::open(true).unwrap();
        let (mut out, mut tmp) = ([PageRun::default(); 8], vec![0u8; 4096]);
        let n = s
            .scan(m.base(), m.end(), Want::AnonData, &mut out, &mut tmp)
            .unwrap();
        assert_eq!(
            &out[..n],
            &[PageRun {
                addr: m.base() + 5 * PAGE as u64,
                pages: 1
            }]
        );
    }

    #[test]
    fn clean_pages_of_a_private_file_mapping_are_not_wanted() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &vec![9u8; 8 * PAGE]).unwrap();
        // SAFETY: a private mapping of our temporary file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let m = Mapping(p.cast(), 8 * PAGE);
        for i in 0..8 {
            assert_eq!(m.read(i), 9); // all present, clean
        }
        m.write(2, 1); // one anonymous copy
        for s in scanners() {
            let (mut out, mut tmp) = ([PageRun::default(); 8], vec![0u8; 4096]);
            let n = s
                .scan(
                    m.base(),
                    m.end(),
                    Want::PrivateFileWritten,
                    &mut out,
                    &mut tmp,
                )
                .unwrap();
            assert_eq!(
                &out[..n],
                &[PageRun {
                    addr: m.base() + 2 * PAGE as u64,
                    pages: 1
                }],
                "{:?}",
                s.method()
            );
            let n = s
                .scan(m.base(), m.end(), Want::AllResident, &mut out, &mut tmp)
                .unwrap();
            assert_eq!(
                &out[..n],
                &[PageRun {
                    addr: m.base(),
                    pages: 8
                }]
            );
        }
    }

    #[test]
    fn zero_page_test_finds_a_single_set_bit_anywhere() {
        // Page-aligned storage, and an unaligned view of it.
        let mut store = vec![0u64; PAGE / 8 + 1];
        // SAFETY: viewing the u64 buffer as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(store.as_mut_ptr().cast::<u8>(), store.len() * 8)
        };
        for (lo, len) in [(0usize, PAGE), (3, PAGE), (0, 100), (5, 0)] {
            let page = &mut bytes[lo..lo + len];
            assert!(is_zero_page(page));
            for i in (0..len).step_by(37).chain(len.checked_sub(1)) {
                for bit in [0x01u8, 0x80] {
                    page[i] = bit;
                    assert!(!is_zero_page(page), "byte {i} of {len} at {lo}");
                    page[i] = 0;
                }
            }
        }
    }
}
