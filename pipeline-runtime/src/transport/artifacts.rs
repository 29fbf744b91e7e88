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
}

impl ArtifactRef {
    /// A local artifact.
    pub fn local(path: PathBuf, codec: Codec) -> Self {
        Self { path, codec, uri: None }
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

const BUFFER: usize = 1 << 16;

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StepError {
    StepError::new(ErrorKind::Codec, format!("{what} artifact `{}`: {e}", path.display()))
}

/// Writes one value of type `type_name` to `path`, encoded by `encode`; returns the payload length.
pub fn write_with(
    path: &Path,
    codec: Codec,
    type_name: &str,
    encode: &mut dyn FnMut(&mut dyn Write) -> Result<(), StepError>,
) -> Result<u64, StepError> {
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
        Ok(length)
    })();
    match result {
        Ok(length) => {
            std::fs::rename(&tmp, path).map_err(|e| io_error(path, "cannot move into place", e))?;
            Ok(length)
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
    decode: &mut dyn FnMut(&mut dyn Read) -> Result<(), StepError>,
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
    let mut payload = BufReader::with_capacity(BUFFER, ChecksumReader::new(file, header.length));
    decode(&mut payload).map_err(context)?;
    if !payload.buffer().is_empty() {
        return Err(context(StepError::new(
            ErrorKind::Codec,
            format!("bytes of the payload were left over after decoding `{type_name}`"),
        )));
    }
    payload.into_inner().verify(&header).map_err(context)
}

/// Reads and checks only the header of an artifact.
pub fn read_header(path: &Path) -> Result<ArtifactHeader, StepError> {
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    ArtifactHeader::read_from(&mut BufReader::with_capacity(512, file))
}

/// Reads the header and the whole payload of an artifact, checking length and checksum,
/// without decoding it (for tools that show artifacts whatever their type).
pub fn read_payload(path: &Path) -> Result<(ArtifactHeader, Vec<u8>), StepError> {
    let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let mut file = BufReader::new(file);
    let header = ArtifactHeader::read_from(&mut file)?;
    let mut payload = Vec::with_capacity(usize::try_from(header.length).unwrap_or(0).min(1 << 30));
    let mut reader = ChecksumReader::new(file, header.length);
    reader
        .read_to_end(&mut payload)
        .map_err(|e| io_error(path, "cannot read", e))?;
    reader.verify(&header)?;
    Ok((header, payload))
}

/// Where output `output` of the step whose folder is `step_dir` is stored.
pub(crate) fn output_path(step_dir: &Path, output: &str) -> PathBuf {
    step_dir.join("outputs").join(format!("{output}.art"))
}

/// Writes `value` to `path`.
pub fn write_value<T: Serialize>(path: &Path, codec: Codec, value: &T) -> Result<ArtifactRef, StepError> {
    write_with(path, codec, std::any::type_name::<T>(), &mut |w| {
        pipeline_core::codec::encode_into(codec, value, w)
    })?;
    Ok(ArtifactRef::local(path.to_path_buf(), codec))
}

/// Reads a `T` from an artifact.
pub fn read_value<T: DeserializeOwned>(artifact: &ArtifactRef) -> Result<T, StepError> {
    let mut value = None;
    read_with(
        artifact.fetch()?,
        artifact.codec,
        std::any::type_name::<T>(),
        &mut |r| {
            value = Some(pipeline_core::codec::decode_from::<T>(artifact.codec, r)?);
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
}
