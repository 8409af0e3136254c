//! TEMPORARY minimal page scanner (pagemap fallback only; to be replaced).
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
