//! The artifact format: a small header (format version, codec, Rust type name, payload length,
//! CRC-32 of the payload) followed by the payload the codec wrote. Readers check every field,
//! so a corrupt, truncated or mismatched artifact is an error, never a silently wrong value.
//!
//! Layout: `PLART`, version (u8), codec name (u8 length + bytes), type name (u16 LE length +
//! bytes), payload length (u64 LE), CRC-32 (u32 LE), payload. Length and checksum come last
//! so a writer can stream the payload and fill them in afterwards.

use crate::error::{ErrorKind, StepError};
use std::io::{self, Read, Write};

const MAGIC: &[u8; 5] = b"PLART";
/// The version of the layout above.
pub const FORMAT_VERSION: u8 = 1;

/// The header of one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactHeader {
    /// Name of the codec that wrote the payload.
    pub codec: String,
    /// `std::any::type_name` of the value.
    pub type_name: String,
    /// Payload length in bytes.
    pub length: u64,
    /// CRC-32 (IEEE) of the payload.
    pub checksum: u32,
}

fn corrupt(message: impl Into<String>) -> StepError {
    StepError::new(ErrorKind::Codec, message)
}

impl ArtifactHeader {
    /// The header's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StepError> {
        let codec = u8::try_from(self.codec.len()).map_err(|_| corrupt("codec name longer than 255 bytes"))?;
        let ty = u16::try_from(self.type_name.len()).map_err(|_| corrupt("type name longer than 65535 bytes"))?;
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.push(codec);
        out.extend_from_slice(self.codec.as_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(self.type_name.as_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
        Ok(out)
    }

    /// Length of the header in bytes.
    pub fn len(&self) -> usize {
        MAGIC.len() + 1 + 1 + self.codec.len() + 2 + self.type_name.len() + 8 + 4
    }

    /// Always false: a header has fixed fields.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Where length and checksum start (they are the last 12 bytes of the header).
    pub fn tail_offset(&self) -> usize {
        self.len() - 12
    }

    /// The 12 bytes of length and checksum.
    pub fn tail_bytes(length: u64, checksum: u32) -> [u8; 12] {
        let mut tail = [0; 12];
        tail[..8].copy_from_slice(&length.to_le_bytes());
        tail[8..].copy_from_slice(&checksum.to_le_bytes());
        tail
    }

    /// Reads and checks a header.
    pub fn read_from(input: &mut dyn Read) -> Result<Self, StepError> {
        let io = |e: io::Error| corrupt(format!("truncated artifact header: {e}"));
        let mut magic = [0u8; 6];
        input.read_exact(&mut magic).map_err(io)?;
        if &magic[..5] != MAGIC {
            return Err(corrupt("not an artifact (bad magic bytes)"));
        }
        if magic[5] != FORMAT_VERSION {
            return Err(corrupt(format!(
                "artifact format version {} is not supported (this build reads version {FORMAT_VERSION})",
                magic[5]
            )));
        }
        let mut len8 = [0u8; 1];
        input.read_exact(&mut len8).map_err(io)?;
        let codec = read_string(input, len8[0] as usize)?;
        let mut len16 = [0u8; 2];
        input.read_exact(&mut len16).map_err(io)?;
        let type_name = read_string(input, u16::from_le_bytes(len16) as usize)?;
        let mut tail = [0u8; 12];
        input.read_exact(&mut tail).map_err(io)?;
        Ok(Self {
            codec,
            type_name,
            length: u64::from_le_bytes(tail[..8].try_into().expect("8 bytes")),
            checksum: u32::from_le_bytes(tail[8..].try_into().expect("4 bytes")),
        })
    }
}

fn read_string(input: &mut dyn Read, len: usize) -> Result<String, StepError> {
    let mut buf = vec![0; len];
    input
        .read_exact(&mut buf)
        .map_err(|e| corrupt(format!("truncated artifact header: {e}")))?;
    String::from_utf8(buf).map_err(|_| corrupt("artifact header holds a name that is not UTF-8"))
}

/// The CRC-32 (IEEE) of a stream. Its first [`Crc32::TABLE_BYTES`] are summed with a table, the
/// rest by `crc32fast`, whose first use in a process asks the CPU for its features: in a VM each
/// `cpuid` traps to the hypervisor, about 30 µs in all on this project's VM, more than the
/// whole checksum of a small value costs, and a worker process pays it for each step.
#[derive(Clone, Default)]
struct Crc32 {
    /// The CRC so far, while the table sums.
    crc: u32,
    /// Bytes summed so far.
    seen: u64,
    fast: Option<crc32fast::Hasher>,
}

impl Crc32 {
    /// The most bytes summed with the table (about 10 µs of it).
    const TABLE_BYTES: u64 = 4096;

    fn update(&mut self, bytes: &[u8]) {
        if let Some(fast) = &mut self.fast {
            return fast.update(bytes);
        }
        if self.seen + bytes.len() as u64 <= Self::TABLE_BYTES {
            let mut crc = !self.crc;
            for &b in bytes {
                crc = CRC_TABLE[usize::from(crc as u8 ^ b)] ^ (crc >> 8);
            }
            self.crc = !crc;
            self.seen += bytes.len() as u64;
        } else {
            let mut fast = crc32fast::Hasher::new_with_initial_len(self.crc, self.seen);
            fast.update(bytes);
            self.fast = Some(fast);
        }
    }

    fn finalize(self) -> u32 {
        self.fast.map_or(self.crc, crc32fast::Hasher::finalize)
    }
}

/// The CRC-32 (IEEE, reflected polynomial `0xEDB88320`) of each byte value.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Counts and checksums what passes through to the inner writer.
pub struct ChecksumWriter<W> {
    inner: W,
    hasher: Crc32,
    length: u64,
}

impl<W: Write> ChecksumWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Crc32::default(),
            length: 0,
        }
    }

    /// The inner writer, the byte count and the CRC-32.
    pub fn finish(self) -> (W, u64, u32) {
        (self.inner, self.length, self.hasher.finalize())
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.length += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads at most the payload's length, checksumming it; [`ChecksumReader::verify`] then checks
/// that the decoder used the whole payload and that the checksum matches.
pub struct ChecksumReader<R> {
    inner: R,
    hasher: Crc32,
    remaining: u64,
}

impl<R: Read> ChecksumReader<R> {
    /// Wraps `inner`, which is positioned at the start of a payload of `length` bytes.
    pub fn new(inner: R, length: u64) -> Self {
        Self {
            inner,
            hasher: Crc32::default(),
            remaining: length,
        }
    }

    /// Checks the payload after decoding: nothing left over, nothing missing, same checksum.
    pub fn verify(mut self, header: &ArtifactHeader) -> Result<(), StepError> {
        if self.remaining > 0 {
            return Err(corrupt(format!(
                "{} bytes of the artifact's payload were left over after decoding `{}`",
                self.remaining, header.type_name
            )));
        }
        let mut probe = [0u8; 1];
        if self
            .inner
            .read(&mut probe)
            .map_err(|e| corrupt(format!("artifact read failed: {e}")))?
            != 0
        {
            return Err(corrupt("the artifact is longer than its header says"));
        }
        let actual = self.hasher.clone().finalize();
        if actual != header.checksum {
            return Err(corrupt(format!(
                "artifact checksum mismatch (header {:08x}, payload {actual:08x}): the file is corrupt",
                header.checksum
            )));
        }
        self.hasher = Crc32::default();
        Ok(())
    }
}

impl<R: Read> Read for ChecksumReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the artifact's payload is truncated",
            ));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    /// The table and `crc32fast` agree, wherever a stream's pieces cross from one to the other.
    #[test]
    fn the_checksum_is_the_same_across_the_switch_to_crc32fast() {
        let data: Vec<u8> = (0..3 * super::Crc32::TABLE_BYTES as usize)
            .map(|i| (i * 131 % 251) as u8)
            .collect();
        for len in [0, 1, 7, 4095, 4096, 4097, 9000, data.len()] {
            let want = crc32fast::hash(&data[..len]);
            for piece in [1, 3, 1000, 4096, 5000] {
                let mut crc = super::Crc32::default();
                data[..len].chunks(piece).for_each(|p| crc.update(p));
                assert_eq!(crc.finalize(), want, "{len} bytes in pieces of {piece}");
            }
        }
    }

    use super::*;

    fn header() -> ArtifactHeader {
        ArtifactHeader {
            codec: "bincode".into(),
            type_name: "alloc::vec::Vec<f64>".into(),
            length: 3,
            checksum: 7,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        let bytes = h.to_bytes().unwrap();
        assert_eq!(bytes.len(), h.len());
        assert_eq!(&bytes[h.tail_offset()..], &ArtifactHeader::tail_bytes(3, 7));
        assert_eq!(ArtifactHeader::read_from(&mut bytes.as_slice()).unwrap(), h);
    }

    #[test]
    fn bad_headers_are_errors() {
        let bytes = header().to_bytes().unwrap();
        let err = ArtifactHeader::read_from(&mut &b"NOPE!\x01"[..]).unwrap_err();
        assert!(err.message.contains("magic"), "{err}");
        let mut future = bytes.clone();
        future[5] = 9;
        let err = ArtifactHeader::read_from(&mut future.as_slice()).unwrap_err();
        assert!(err.message.contains("version 9"), "{err}");
        let err = ArtifactHeader::read_from(&mut &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.message.contains("truncated"), "{err}");
    }

    #[test]
    fn checksums_catch_flipped_extra_and_missing_bytes() {
        let payload = b"hello world".to_vec();
        let mut w = ChecksumWriter::new(Vec::new());
        w.write_all(&payload).unwrap();
        let (_, length, checksum) = w.finish();
        let h = ArtifactHeader {
            codec: "c".into(),
            type_name: "t".into(),
            length,
            checksum,
        };

        let mut r = ChecksumReader::new(payload.as_slice(), length);
        io::copy(&mut r, &mut io::sink()).unwrap();
        r.verify(&h).unwrap();

        let mut flipped = payload.clone();
        flipped[3] ^= 1;
        let mut r = ChecksumReader::new(flipped.as_slice(), length);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert!(r.verify(&h).unwrap_err().message.contains("checksum mismatch"));

        let mut longer = payload.clone();
        longer.push(b'!');
        let mut r = ChecksumReader::new(longer.as_slice(), length);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert!(r.verify(&h).unwrap_err().message.contains("longer"));

        let mut r = ChecksumReader::new(&payload[..5], length);
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
    }
}
