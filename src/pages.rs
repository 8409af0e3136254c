//! Which pages of a region carry data, from /proc/self/pagemap (bit 63
//! present, 62 swapped, 61 file-backed or shared), and a fast zero-page
//! test. Runs while the program's threads are suspended: never allocates.
//! (The PAGEMAP_SCAN ioctl, one call per range, is the throughput issue's.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageRun {
    pub addr: u64,
    pub pages: u64,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    AnonData,
    PrivateFileWritten,
    AllResident,
}
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum PagesError {
    #[error("out of runs")]
    OutOfRuns { resume_at: u64 },
    #[error("io {0}")]
    Io(i32),
}
pub struct PageScanner {
    fd: crate::sys::RawFd,
}
impl PageScanner {
    pub fn open() -> Result<Self, PagesError> {
        Ok(PageScanner {
            fd: crate::sys::RawFd::open(b"/proc/self/pagemap\0", libc::O_RDONLY, 0)
                .map_err(|e| PagesError::Io(e.0))?,
        })
    }
    pub fn raw_fd(&self) -> i32 {
        self.fd.raw()
    }
    pub fn scan(
        &self,
        start: u64,
        end: u64,
        want: Want,
        out: &mut [PageRun],
        tmp: &mut [u8],
    ) -> Result<usize, PagesError> {
        let page = 4096u64;
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
            for i in 0..got {
                let e = u64::from_ne_bytes(tmp[i * 8..i * 8 + 8].try_into().unwrap_or_default());
                let present = e >> 63 & 1 == 1;
                let swapped = e >> 62 & 1 == 1;
                let file = e >> 61 & 1 == 1;
                let ok = match want {
                    Want::AnonData => present || swapped,
                    Want::PrivateFileWritten => (present && !file) || swapped,
                    Want::AllResident => present || swapped,
                };
                let addr = at + i as u64 * page;
                if !ok {
                    continue;
                }
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
pub fn is_zero_page(p: &[u8]) -> bool {
    p.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_exactly_the_touched_pages_of_an_anonymous_mapping() {
        let page = 4096usize;
        // SAFETY: a private anonymous mapping used only by this test.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                64 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as *mut u8;
        for i in [0usize, 1, 2, 10, 63] {
            // SAFETY: inside the mapping.
            unsafe { *p.add(i * page) = 1 };
        }
        let s = PageScanner::open().unwrap();
        let (mut out, mut tmp) = ([PageRun::default(); 8], vec![0u8; 4096]);
        let base = p as u64;
        let n = s
            .scan(
                base,
                base + 64 * page as u64,
                Want::AnonData,
                &mut out,
                &mut tmp,
            )
            .unwrap();
        assert_eq!(
            &out[..n],
            &[
                PageRun {
                    addr: base,
                    pages: 3
                },
                PageRun {
                    addr: base + 10 * page as u64,
                    pages: 1
                },
                PageRun {
                    addr: base + 63 * page as u64,
                    pages: 1
                }
            ]
        );
        // With room for one run only, the scan resumes where it stopped.
        let mut one = [PageRun::default(); 1];
        match s.scan(
            base,
            base + 64 * page as u64,
            Want::AnonData,
            &mut one,
            &mut tmp,
        ) {
            Err(PagesError::OutOfRuns { resume_at }) => {
                assert_eq!(resume_at, base + 10 * page as u64)
            }
            other => panic!("expected OutOfRuns, got {other:?}"),
        }
        // SAFETY: unmapping the test's mapping.
        unsafe { libc::munmap(p.cast(), 64 * page) };
    }

    #[test]
    fn zero_page_test() {
        let mut page = vec![0u8; 4096];
        assert!(is_zero_page(&page));
        for i in [0, 2048, 4095] {
            page[i] = 1;
            assert!(!is_zero_page(&page), "byte {i}");
            page[i] = 0;
        }
    }
}
