//! The local artifact store: values as files in the state folder, each with the header of
//! `pipeline_core::artifact`. Writes stream through a buffer into a temporary file that is
//! renamed into place; reads stream too and check codec, type, length and checksum.

use pipeline_core::artifact::{ArtifactHeader, ChecksumReader, ChecksumWriter};
use pipeline_core::{Codec, ErrorKind, StepError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where one value is stored, and how it was encoded.
#[derive(Debug, Clone)]
pub struct ArtifactRef {
    /// The artifact file (for an artifact in object storage: where it is downloaded to).
    pub path: PathBuf,
    /// The codec its payload was written with.
    pub codec: Codec,
    /// Its object-storage URI, when it lives there (`s3://...`).
    pub uri: Option<String>,
    /// Its header, when known without reading the file (this process or a worker wrote it):
    /// what the run store records of it (type, size, checksum).
    pub header: Option<ArtifactHeader>,
}

impl ArtifactRef {
    /// A local artifact.
    pub fn local(path: PathBuf, codec: Codec) -> Self {
        Self {
            path,
            codec,
            uri: None,
            header: None,
        }
    }

    /// Where the artifact is, as recorded: its URI, else its path.
    pub fn location(&self) -> String {
        self.uri.clone().unwrap_or_else(|| self.path.display().to_string())
    }

    /// Makes sure the artifact is in its local file, downloading it from object storage first
    /// if it is not there yet.
    pub fn fetch(&self) -> Result<&Path, StepError> {
        if let Some(uri) = &self.uri {
            if !self.path.exists() {
                crate::transport::object_storage::download(uri, &self.path)?;
            }
        }
        Ok(&self.path)
    }
}

/// One argument of a step as artifacts, for a worker process.
#[derive(Debug, Clone)]
pub(crate) enum ArgArtifacts {
    /// The value in one artifact.
    One(ArtifactRef),
    /// A fan-in (`Vec<Handle<E>>`): one artifact per element, read as one sequence.
    Elements(Vec<ArtifactRef>),
}

const BUFFER: usize = 1 << 16;

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StepError {
    StepError::new(ErrorKind::Codec, format!("{what} artifact `{}`: {e}", path.display()))
}

/// Writes one value of type `type_name` to `path`, encoded by `encode`; returns the header
/// written (payload length and checksum included).
pub fn write_with(
    path: &Path,
    codec: Codec,
    type_name: &str,
    encode: &mut dyn FnMut(&mut dyn Write) -> Result<(), StepError>,
) -> Result<ArtifactHeader, StepError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(path, "cannot create the folder of", e))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let header = ArtifactHeader {
        codec: codec.name().to_string(),
        type_name: type_name.to_string(),
        length: 0,
        checksum: 0,
    };
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| io_error(path, "cannot create", e))?;
        file.write_all(&header.to_bytes()?)
            .map_err(|e| io_error(path, "cannot write", e))?;
        // The buffer sits outside the checksum so the CRC runs over large chunks.
        let mut out = BufWriter::with_capacity(BUFFER, ChecksumWriter::new(file));
        encode(&mut out)?;
        let (mut file, length, checksum) = out
            .into_inner()
            .map_err(|e| io_error(path, "cannot write", e.into_error()))?
            .finish();
        file.seek(SeekFrom::Start(header.tail_offset() as u64))
            .map_err(|e| io_error(path, "cannot write", e))?;
        file.write_all(&ArtifactHeader::tail_bytes(length, checksum))
            .map_err(|e| io_error(path, "cannot write", e))?;
        Ok((length, checksum))
    })();
    match result {
        Ok((length, checksum)) => {
            std::fs::rename(&tmp, path).map_err(|e| io_error(path, "cannot move into place", e))?;
            Ok(ArtifactHeader {
                length,
                checksum,
                ..header
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads the artifact at `path`, which must hold a `type_name` written with `codec`, handing
/// its payload to `decode`; then checks that the whole payload was used and is intact.
pub fn read_with(
    path: &Path,
    codec: Codec,
    type_name: &str,
    decode: &mut dyn FnMut(&mut dyn Read, u64) -> Result<(), StepError>,
) -> Result<(), StepError> {
    let context = |mut e: StepError| {
        e.message = format!("artifact `{}`: {}", path.display(), e.message);
        e
    };
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let mut file = BufReader::with_capacity(512, file);
    let header = ArtifactHeader::read_from(&mut file).map_err(context)?;
    if header.codec != codec.name() {
        return Err(context(StepError::new(
            ErrorKind::Codec,
            format!(
                "written with codec `{}`, but the pipeline reads `{}`",
                header.codec,
                codec.name()
            ),
        )));
    }
    if header.type_name != type_name {
        return Err(context(StepError::new(
            ErrorKind::Codec,
            format!("holds a `{}`, but a `{type_name}` was expected", header.type_name),
        )));
    }
    // The checksum is checked before anything is decoded: a corrupt payload (a length prefix
    // claiming 2^40 bytes, say) must be an error, never a huge allocation in the decoder.
    let mut file = file.into_inner();
    check_payload(&mut file, &header, path).map_err(context)?;
    let mut payload = BufReader::with_capacity(BUFFER, ChecksumReader::new(file, header.length));
    decode(&mut payload, header.length).map_err(context)?;
    if !payload.buffer().is_empty() {
        return Err(context(StepError::new(
            ErrorKind::Codec,
            format!("bytes of the payload were left over after decoding `{type_name}`"),
        )));
    }
    payload.into_inner().verify(&header).map_err(context)
}

/// Reads a sequence of type `type_name` (a `Vec<E>`) stored as one artifact per element (a
/// fan-in), handing `decode` the elements' payloads joined the way `codec` frames a sequence,
/// so nothing is decoded and encoded again. Each element's header (codec, type), length and
/// checksum are checked as it streams. `codec` must have a known framing (not a user's codec).
pub fn read_elements(
    paths: &[PathBuf],
    codec: Codec,
    type_name: &str,
    decode: &mut dyn FnMut(&mut dyn Read, u64) -> Result<(), StepError>,
) -> Result<(), StepError> {
    let frame = pipeline_core::codec::sequence_frame(codec, paths.len()).ok_or_else(|| {
        StepError::new(
            ErrorKind::Codec,
            format!("codec `{}` cannot join a fan-in's artifacts", codec.name()),
        )
    })?;
    // The joined stream is at most the frame and the elements' files.
    let length = paths.iter().fold(frame_length(&frame, paths.len()), |total, path| {
        total.saturating_add(std::fs::metadata(path).map_or(0, |m| m.len()))
    });
    let mut joined = BufReader::with_capacity(
        BUFFER,
        Elements {
            paths,
            codec,
            sequence_type: type_name,
            frame,
            next: 0,
            phase: Phase::Frame(Part::Prefix, 0),
            failed: None,
        },
    );
    let decoded = decode(&mut joined, length);
    let leftover = !joined.buffer().is_empty();
    let mut elements = joined.into_inner();
    if let Some(e) = elements.failed.take() {
        return Err(e);
    }
    decoded?;
    let mut probe = [0u8; 1];
    if leftover
        || elements
            .read(&mut probe)
            .map_err(|e| StepError::new(ErrorKind::Codec, e.to_string()))?
            != 0
    {
        return Err(elements.failed.take().unwrap_or_else(|| {
            StepError::new(
                ErrorKind::Codec,
                format!("bytes of the fan-in's artifacts were left over after decoding `{type_name}`"),
            )
        }));
    }
    Ok(())
}

/// The bytes `frame` adds around `elements` elements.
fn frame_length(frame: &pipeline_core::codec::SequenceFrame, elements: usize) -> u64 {
    let separators = frame.separator.len() * elements.saturating_sub(1);
    (frame.prefix.len() + frame.suffix.len() + separators) as u64
}

/// Where [`Elements`] is in the joined stream.
enum Phase {
    /// Within a part of the frame, at this offset.
    Frame(Part, usize),
    /// Within an element's payload.
    Element(Box<ChecksumReader<BufReader<File>>>, ArtifactHeader, usize),
    Done,
}

/// The parts of a sequence's frame.
#[derive(Clone, Copy)]
enum Part {
    /// Before the first element.
    Prefix,
    /// Before element `next`.
    Separator,
    /// After the last element.
    Suffix,
}

/// The elements of a fan-in read as one encoded sequence.
struct Elements<'a> {
    paths: &'a [PathBuf],
    codec: Codec,
    /// `Vec<E>`, whose `E` each element must hold.
    sequence_type: &'a str,
    frame: pipeline_core::codec::SequenceFrame,
    /// The next element to open.
    next: usize,
    phase: Phase,
    /// The first error, with its artifact (a `Read` can only return `io::Error`).
    failed: Option<StepError>,
}

impl Elements<'_> {
    fn fail(&mut self, e: StepError) -> std::io::Error {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e.message.clone());
        self.failed.get_or_insert(e);
        io
    }

    /// Opens element `index`, checking its header.
    fn open(&self, index: usize) -> Result<Phase, StepError> {
        let path = &self.paths[index];
        let context = |mut e: StepError| {
            e.message = format!(
                "artifact `{}` (element {index} of a fan-in): {}",
                path.display(),
                e.message
            );
            e
        };
        let mut file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
        let header = ArtifactHeader::read_from(&mut BufReader::with_capacity(512, &mut file)).map_err(context)?;
        if header.codec != self.codec.name() {
            return Err(context(StepError::new(
                ErrorKind::Codec,
                format!(
                    "written with codec `{}`, but the pipeline reads `{}`",
                    header.codec,
                    self.codec.name()
                ),
            )));
        }
        if self.sequence_type != format!("alloc::vec::Vec<{}>", header.type_name) {
            return Err(context(StepError::new(
                ErrorKind::Codec,
                format!(
                    "holds a `{}`, which is not an element of `{}`",
                    header.type_name, self.sequence_type
                ),
            )));
        }
        // Checked before any of its bytes reach the decoder (see `read_with`).
        check_payload(&mut file, &header, path).map_err(context)?;
        let payload = ChecksumReader::new(BufReader::with_capacity(BUFFER, file), header.length);
        Ok(Phase::Element(Box::new(payload), header, index))
    }

    /// Copies from `bytes[at..]`; gives the count, and whether `bytes` is used up.
    fn copy(bytes: &[u8], at: usize, buf: &mut [u8]) -> (usize, bool) {
        let n = (bytes.len() - at).min(buf.len());
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        (n, at + n == bytes.len())
    }

    /// The phase after the prefix or a separator: the next element, or the suffix.
    fn after_frame(&mut self) -> Result<Phase, StepError> {
        if self.next < self.paths.len() {
            let index = self.next;
            self.next += 1;
            self.open(index)
        } else {
            Ok(Phase::Frame(Part::Suffix, 0))
        }
    }
}

impl Read for Elements<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if buf.is_empty() {
                return Ok(0);
            }
            let phase = std::mem::replace(&mut self.phase, Phase::Done);
            let (n, next) = match phase {
                Phase::Done => return Ok(0),
                Phase::Frame(part, at) => {
                    let bytes = match part {
                        Part::Prefix => &self.frame.prefix,
                        Part::Separator => &self.frame.separator,
                        Part::Suffix => &self.frame.suffix,
                    };
                    let (n, used_up) = Self::copy(bytes, at, buf);
                    let next = match (used_up, part) {
                        (false, _) => Phase::Frame(part, at + n),
                        (true, Part::Suffix) => Phase::Done,
                        (true, _) => self.after_frame().map_err(|e| self.fail(e))?,
                    };
                    (n, next)
                }
                Phase::Element(mut reader, header, index) => {
                    let n = reader.read(buf).map_err(|e| {
                        let path = &self.paths[index];
                        self.fail(io_error(path, "cannot read", e))
                    })?;
                    if n > 0 {
                        (n, Phase::Element(reader, header, index))
                    } else {
                        let path = self.paths[index].clone();
                        reader.verify(&header).map_err(|mut e| {
                            e.message = format!("artifact `{}`: {}", path.display(), e.message);
                            self.fail(e)
                        })?;
                        let part = if self.next < self.paths.len() {
                            Part::Separator
                        } else {
                            Part::Suffix
                        };
                        (0, Phase::Frame(part, 0))
                    }
                }
            };
            self.phase = next;
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

/// Reads the payload of the artifact at `path` once, checking its length and checksum, and
/// leaves `file` at the payload's start.
fn check_payload(file: &mut File, header: &ArtifactHeader, path: &Path) -> Result<(), StepError> {
    let start = SeekFrom::Start(header.len() as u64);
    file.seek(start).map_err(|e| io_error(path, "cannot read", e))?;
    let mut check = ChecksumReader::new(BufReader::with_capacity(BUFFER, &mut *file), header.length);
    std::io::copy(&mut check, &mut std::io::sink()).map_err(|e| io_error(path, "cannot read", e))?;
    check.verify(header)?;
    file.seek(start).map_err(|e| io_error(path, "cannot read", e))?;
    Ok(())
}

/// Checks a whole artifact without decoding it: its header, its payload's length and
/// checksum. Reads the file once, in a small buffer.
pub fn verify(path: &Path) -> Result<ArtifactHeader, StepError> {
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let mut reader = BufReader::with_capacity(512, file);
    let header = ArtifactHeader::read_from(&mut reader)?;
    let mut file = reader.into_inner();
    check_payload(&mut file, &header, path)?;
    Ok(header)
}

/// Reads and checks only the header of an artifact.
pub fn read_header(path: &Path) -> Result<ArtifactHeader, StepError> {
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    ArtifactHeader::read_from(&mut BufReader::with_capacity(512, file))
}

/// [`read_payload`] of an artifact where the run store records it: a path, or an object-storage
/// URI (`s3://...`, downloaded first into a temporary file, removed after).
pub fn read_payload_at(location: &str) -> Result<(ArtifactHeader, Vec<u8>), StepError> {
    if !crate::transport::object_storage::is_remote(location) {
        return read_payload(Path::new(location));
    }
    let local = std::env::temp_dir().join(format!(
        "pipeline-read-{}-{}.art",
        std::process::id(),
        blake3::hash(location.as_bytes()).to_hex()
    ));
    let read = crate::transport::object_storage::download(location, &local).and_then(|()| read_payload(&local));
    let _ = std::fs::remove_file(&local);
    read.map_err(|mut e| {
        e.message = format!("`{location}`: {}", e.message);
        e
    })
}

/// Reads the header and the whole payload of an artifact, checking length and checksum,
/// without decoding it (for tools that show artifacts whatever their type).
pub fn read_payload(path: &Path) -> Result<(ArtifactHeader, Vec<u8>), StepError> {
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    // A header may claim any length: reserve no more than the file can hold.
    let size = file.metadata().map_or(0, |m| m.len());
    let mut file = BufReader::new(file);
    let header = ArtifactHeader::read_from(&mut file)?;
    let mut payload = Vec::with_capacity(usize::try_from(header.length.min(size)).unwrap_or(0));
    let mut reader = ChecksumReader::new(file, header.length);
    reader
        .read_to_end(&mut payload)
        .map_err(|e| io_error(path, "cannot read", e))?;
    reader.verify(&header)?;
    Ok((header, payload))
}

/// Copies an artifact's payload into `out` as it streams from the file (never whole in
/// memory), checking its length and checksum.
pub(crate) fn stream_payload(path: &Path, out: &mut dyn Write) -> Result<(), StepError> {
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let mut file = BufReader::with_capacity(BUFFER, file);
    let header = ArtifactHeader::read_from(&mut file)?;
    let mut reader = ChecksumReader::new(file, header.length);
    std::io::copy(&mut reader, out).map_err(|e| io_error(path, "cannot read", e))?;
    reader.verify(&header)
}

/// Where output `output` of the step whose folder is `step_dir` is stored.
pub(crate) fn output_path(step_dir: &Path, output: &str) -> PathBuf {
    step_dir.join("outputs").join(format!("{output}.art"))
}

/// Writes `value` to `path`.
pub fn write_value<T: Serialize>(path: &Path, codec: Codec, value: &T) -> Result<ArtifactRef, StepError> {
    let header = write_with(path, codec, std::any::type_name::<T>(), &mut |w| {
        pipeline_core::codec::encode_into(codec, value, w)
    })?;
    Ok(ArtifactRef {
        header: Some(header),
        ..ArtifactRef::local(path.to_path_buf(), codec)
    })
}

/// Reads a `T` from an artifact.
pub fn read_value<T: DeserializeOwned>(artifact: &ArtifactRef) -> Result<T, StepError> {
    let mut value = None;
    read_with(
        artifact.fetch()?,
        artifact.codec,
        std::any::type_name::<T>(),
        &mut |r, length| {
            value = Some(pipeline_core::codec::decode_from::<T>(artifact.codec, r, length)?);
            Ok(())
        },
    )?;
    value.ok_or_else(|| StepError::new(ErrorKind::Codec, "the artifact was not decoded"))
}

/// The codec called `name`: a built-in one, or the custom codec of pipeline `pipeline`.
pub(crate) fn codec_named(name: &str, pipeline: &str) -> Result<Codec, StepError> {
    match name {
        "bincode" => return Ok(Codec::Bincode),
        "json" => return Ok(Codec::Json),
        _ => {}
    }
    pipeline_core::registry::pipelines()
        .filter(|p| p.name == pipeline)
        .map(|p| p.options.codec)
        .find(|c| c.name() == name)
        .ok_or_else(|| {
            StepError::new(
                ErrorKind::Setup,
                format!("no codec named `{name}` in pipeline `{pipeline}` of this binary"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pipeline-artifacts-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_with_every_builtin_codec() {
        let d = dir();
        for codec in [Codec::Bincode, Codec::Json] {
            let value = (vec![1.5f64; 1000], "x".to_string());
            let r = write_value(&d.join(format!("v.{}", codec.name())), codec, &value).unwrap();
            assert_eq!(read_value::<(Vec<f64>, String)>(&r).unwrap(), value);
        }
    }

    #[test]
    fn corruption_type_and_codec_mismatches_are_errors() {
        let d = dir();
        let r = write_value(&d.join("c.art"), Codec::Bincode, &vec![7u32; 100]).unwrap();
        let err = read_value::<Vec<u64>>(&r).unwrap_err();
        assert!(
            err.message
                .contains("holds a `alloc::vec::Vec<u32>`, but a `alloc::vec::Vec<u64>` was expected"),
            "{err}"
        );
        let err = read_value::<Vec<u32>>(&ArtifactRef::local(r.path.clone(), Codec::Json)).unwrap_err();
        assert!(err.message.contains("written with codec `bincode`"), "{err}");

        let mut bytes = std::fs::read(&r.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&r.path, &bytes).unwrap();
        let err = read_value::<Vec<u32>>(&r).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Codec);
        assert!(
            err.message.contains("checksum mismatch") || err.message.contains("decoding failed"),
            "{err}"
        );

        bytes.truncate(bytes.len() - 10);
        std::fs::write(&r.path, &bytes).unwrap();
        assert!(read_value::<Vec<u32>>(&r).is_err());
        let err = read_value::<u8>(&ArtifactRef::local(d.join("missing.art"), Codec::Bincode)).unwrap_err();
        assert!(err.message.contains("cannot open"), "{err}");
    }

    #[test]
    fn a_corrupt_payload_is_rejected_before_it_is_decoded() {
        let d = dir();
        let r = write_value(&d.join("prefix.art"), Codec::Bincode, &"x".repeat(64)).unwrap();
        let header = read_header(&r.path).unwrap();
        let mut bytes = std::fs::read(&r.path).unwrap();
        // The string's length prefix becomes 2^40. The payload's length and checksum are checked
        // first, so the decoder never sees it (the error is not the decoder's).
        let at = header.len();
        bytes.splice(at..at + 1, [253u8, 0, 0, 0, 0, 0, 1, 0, 0]);
        std::fs::write(&r.path, &bytes).unwrap();
        let err = read_value::<String>(&r).unwrap_err();
        assert!(err.message.contains("longer than its header says"), "{err}");
        // The same inside a fan-in.
        let err = read_joined::<Vec<String>>(std::slice::from_ref(&r.path), Codec::Bincode).unwrap_err();
        assert!(err.message.contains("prefix.art"), "{err}");
    }

    fn read_joined<T: DeserializeOwned>(paths: &[PathBuf], codec: Codec) -> Result<T, StepError> {
        let mut value = None;
        read_elements(paths, codec, std::any::type_name::<T>(), &mut |r, length| {
            value = Some(pipeline_core::codec::decode_from::<T>(codec, r, length)?);
            Ok(())
        })?;
        Ok(value.unwrap())
    }

    #[test]
    fn a_fan_in_is_read_from_its_elements_artifacts() {
        let d = dir();
        for codec in [Codec::Bincode, Codec::Json] {
            for count in [0usize, 1, 3] {
                let values: Vec<(u32, String)> = (0..count).map(|i| (i as u32, "x".repeat(i * 1000))).collect();
                let paths: Vec<PathBuf> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        write_value(&d.join(format!("e{i}.{}", codec.name())), codec, v)
                            .unwrap()
                            .path
                    })
                    .collect();
                assert_eq!(read_joined::<Vec<(u32, String)>>(&paths, codec).unwrap(), values);
            }
        }
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                write_value(&d.join(format!("f{i}.art")), Codec::Bincode, &vec![i as u8; 5000])
                    .unwrap()
                    .path
            })
            .collect();
        // A corrupt element names its artifact.
        let mut bytes = std::fs::read(&paths[1]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&paths[1], bytes).unwrap();
        let err = read_joined::<Vec<Vec<u8>>>(&paths, Codec::Bincode).unwrap_err();
        assert!(
            err.message.contains("f1.art") && err.message.contains("checksum"),
            "{err}"
        );
        // So does an element of another type.
        let err = read_joined::<Vec<Vec<u16>>>(&paths[..1], Codec::Bincode).unwrap_err();
        assert!(err.message.contains("which is not an element of"), "{err}");
        let err = read_joined::<Vec<Vec<u8>>>(&paths[..1], Codec::Json).unwrap_err();
        assert!(err.message.contains("written with codec `bincode`"), "{err}");
    }
}
