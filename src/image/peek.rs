//! A quick look at where an image's pages go: walks the record framing and
//! reads only each CHUNK's header and runs (a few dozen bytes per chunk),
//! skipping the page data, with positioned reads. Nothing is verified here:
//! the result is a hint for planning (the restarter uses it to choose
//! huge-page staging) and must never decide anything that matters for
//! correctness. The full, checked read is [`super::read::ImageFile`].

use super::format::{RecordKind, FILE_HEADER_LEN, FRAME_LEN, MAX_RECORD_LEN};
use super::model::{ChunkHeader, ChunkRun};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Calls `f(region, run)` for every run of every chunk, in file order.
/// Stops quietly at the first thing that does not look like a chunk (END,
/// damage, a short read): a damaged image is refused later by the full
/// read anyway. Returns how many chunks were seen.
pub fn chunk_runs(file: &File, mut f: impl FnMut(u32, ChunkRun)) -> u64 {
    let Ok(meta) = file.metadata() else {
        return 0;
    };
    let len = meta.len();
    let mut at = FILE_HEADER_LEN as u64;
    let mut chunks = 0;
    let mut frame = [0u8; FRAME_LEN];
    let mut head = [0u8; ChunkHeader::ENCODED_LEN];
    let mut runs = vec![0u8; 64 * ChunkHeader::RUN_LEN];
    while at + FRAME_LEN as u64 <= len && file.read_exact_at(&mut frame, at).is_ok() {
        let kind = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let mut l = [0u8; 8];
        l.copy_from_slice(&frame[8..16]);
        let payload = u64::from_le_bytes(l);
        if payload > MAX_RECORD_LEN {
            break;
        }
        let body = at + FRAME_LEN as u64;
        match RecordKind::from_u32(kind) {
            Some(
                RecordKind::Meta | RecordKind::Regions | RecordKind::Kernel | RecordKind::Threads,
            ) => {}
            Some(RecordKind::Chunk) => {
                if file.read_exact_at(&mut head, body).is_err() {
                    break;
                }
                let mut d = super::codec::Decoder::new(&head);
                let Ok(h) = ChunkHeader::decode(&mut d) else {
                    break;
                };
                let need = h.n_runs as usize * ChunkHeader::RUN_LEN;
                if (ChunkHeader::ENCODED_LEN + need) as u64 > payload {
                    break;
                }
                if runs.len() < need {
                    runs.resize(need, 0);
                }
                let buf = &mut runs[..need];
                if file
                    .read_exact_at(buf, body + ChunkHeader::ENCODED_LEN as u64)
                    .is_err()
                {
                    break;
                }
                let mut d = super::codec::Decoder::new(buf);
                for _ in 0..h.n_runs {
                    match ChunkRun::decode(&mut d) {
                        Ok(r) => f(h.region, r),
                        Err(_) => return chunks,
                    }
                }
                chunks += 1;
            }
            _ => break,
        }
        at = body + payload;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::codec::Encoder;
    use std::io::Write;

    fn record(kind: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn chunk(region: u32, runs: &[(u64, u32)], data: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut e = Encoder::new(&mut buf);
        ChunkHeader {
            region,
            encoding: 0,
            raw_len: 0,
            n_runs: runs.len() as u32,
        }
        .encode(&mut e)
        .unwrap();
        for &(first_page, pages) in runs {
            ChunkRun { first_page, pages }.encode(&mut e).unwrap();
        }
        let n = e.len();
        let mut p = buf[..n].to_vec();
        p.resize(n + data, 0xaa);
        record(5, &p)
    }

    #[test]
    fn walks_the_chunks_and_stops_at_end_or_damage() {
        let mut img = vec![0u8; FILE_HEADER_LEN];
        img.extend(record(1, b"meta"));
        img.extend(record(2, b"regions"));
        img.extend(chunk(0, &[(0, 3), (7, 1)], 100));
        img.extend(chunk(2, &[(5, 512)], 10));
        let good = img.len();
        img.extend(record(6, b"end"));
        img.extend(chunk(3, &[(1, 1)], 0));
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&img).unwrap();
        let mut seen = Vec::new();
        let n = chunk_runs(&f, |r, run| seen.push((r, run.first_page, run.pages)));
        assert_eq!(n, 2);
        assert_eq!(seen, vec![(0, 0, 3), (0, 7, 1), (2, 5, 512)]);

        // Cut inside the second chunk's runs: only the first is seen.
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&img[..good - 20]).unwrap();
        let mut seen = Vec::new();
        assert_eq!(chunk_runs(&f, |r, run| seen.push((r, run.first_page))), 1);
        assert_eq!(seen, vec![(0, 0), (0, 7)]);
    }
}
