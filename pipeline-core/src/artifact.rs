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

/// Counts and checksums what passes through to the inner writer.
pub struct ChecksumWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    length: u64,
}

impl<W: Write> ChecksumWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
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
    hasher: crc32fast::Hasher,
    remaining: u64,
}

impl<R: Read> ChecksumReader<R> {
    /// Wraps `inner`, which is positioned at the start of a payload of `length` bytes.
    pub fn new(inner: R, length: u64) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
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
        self.hasher = crc32fast::Hasher::new();
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
