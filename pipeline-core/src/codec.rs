//! How values cross step boundaries: the bound every step input and output meets, and the
//! codecs that turn values into artifact payloads: `bincode` 2 through serde (the default),
//! JSON, or one of the user's ([`ArtifactCodec`], the analogue of ClearML's
//! `artifact_serialization_function`).

use crate::error::{ErrorKind, StepError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};

/// A value that can flow between steps: serializable (to become an artifact), clonable (one
/// output may feed several steps) and sendable to the thread or process that runs the step.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot flow between pipeline steps",
    label = "this type must implement `serde::Serialize`, `serde::de::DeserializeOwned`, `Clone` and `Send`",
    note = "step inputs and outputs become artifacts, so they need serde; derive `Serialize, Deserialize, Clone` on your own types"
)]
pub trait ComponentValue: Serialize + DeserializeOwned + Clone + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> ComponentValue for T {}

/// A user-supplied serialization format for artifacts. It sees values through `erased_serde`,
/// so any serde format works: implement it once, then name a `static` of it in
/// `#[pipeline(artifact_codec = MY_CODEC)]`.
///
/// ```
/// use pipeline_core::codec::ArtifactCodec;
/// struct JsonLines;
/// impl ArtifactCodec for JsonLines {
///     fn name(&self) -> &'static str { "json-pretty" }
///     fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut dyn std::io::Write) -> Result<(), String> {
///         let mut ser = serde_json::Serializer::pretty(out);
///         value.erased_serialize(&mut <dyn erased_serde::Serializer>::erase(&mut ser)).map_err(|e| e.to_string())
///     }
///     fn decode(&self, input: &mut dyn std::io::Read,
///               visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer) -> Result<(), String>) -> Result<(), String> {
///         let mut de = serde_json::Deserializer::from_reader(input);
///         visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
///     }
/// }
/// ```
pub trait ArtifactCodec: Send + Sync + 'static {
    /// A stable name, written into every artifact's header.
    fn name(&self) -> &'static str;
    /// Writes `value` to `out`.
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut dyn Write) -> Result<(), String>;
    /// Reads one value from `input`, handing a deserializer to `visit` (which builds the value).
    fn decode(
        &self,
        input: &mut dyn Read,
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer) -> Result<(), String>,
    ) -> Result<(), String>;
}

/// The codec a pipeline's artifacts are written with.
#[derive(Clone, Copy)]
pub enum Codec {
    /// `bincode` 2, standard configuration, through serde: compact and fast (the default).
    Bincode,
    /// JSON through `serde_json`: readable, portable, larger.
    Json,
    /// The user's codec.
    Custom(&'static dyn ArtifactCodec),
}

impl Codec {
    /// The name written into artifact headers.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bincode => "bincode",
            Self::Json => "json",
            Self::Custom(c) => c.name(),
        }
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({})", self.name())
    }
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn codec_error(codec: Codec, what: &str, e: impl std::fmt::Display) -> StepError {
    StepError::new(ErrorKind::Codec, format!("{} {what}: {e}", codec.name()))
}

/// Writes `value` to `out` with `codec`.
pub fn encode_into<T: Serialize + ?Sized>(codec: Codec, value: &T, out: &mut dyn Write) -> Result<(), StepError> {
    match codec {
        Codec::Bincode => bincode::serde::encode_into_std_write(value, &mut { out }, bincode_config())
            .map(drop)
            .map_err(|e| codec_error(codec, "encoding failed", e)),
        Codec::Json => serde_json::to_writer(out, value).map_err(|e| codec_error(codec, "encoding failed", e)),
        Codec::Custom(c) => {
            let erased: &dyn erased_serde::Serialize = &value;
            c.encode(erased, out)
                .map_err(|e| codec_error(codec, "encoding failed", e))
        }
    }
}

/// Reads one value of type `T` from `input` with `codec`. `length` is the most bytes `input`
/// holds: the built-in binary codec never allocates more than about twice that for the strings
/// and byte buffers it decodes, so a corrupt length prefix is an error, not a huge allocation.
pub fn decode_from<T: DeserializeOwned>(codec: Codec, input: &mut dyn Read, length: u64) -> Result<T, StepError> {
    match codec {
        Codec::Bincode => bincode_bounded(input, length).map_err(|e| codec_error(codec, "decoding failed", e)),
        Codec::Json => {
            let mut de = serde_json::Deserializer::from_reader(input);
            T::deserialize(&mut de).map_err(|e| codec_error(codec, "decoding failed", e))
        }
        Codec::Custom(c) => {
            let mut out = None;
            c.decode(input, &mut |de| {
                out = Some(erased_serde::deserialize::<T>(de).map_err(|e| e.to_string())?);
                Ok(())
            })
            .map_err(|e| codec_error(codec, "decoding failed", e))?;
            out.ok_or_else(|| codec_error(codec, "decoding failed", "the codec produced no value"))
        }
    }
}

/// Encodes a value with the default codec.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StepError> {
    let mut out = Vec::new();
    encode_into(Codec::Bincode, value, &mut out)?;
    Ok(out)
}

/// Decodes with bincode from at most `length` bytes. Through serde, bincode claims memory up
/// front only for strings and byte buffers (sequences grow as they are read), and those claims
/// are bytes of the input: a limit of the input's length (its next power of two, as bincode's
/// limit is a constant) turns an impossible claim into an error.
fn bincode_bounded<T: DeserializeOwned>(
    mut input: &mut dyn Read,
    length: u64,
) -> Result<T, bincode::error::DecodeError> {
    macro_rules! tiers {
        ($($bits:literal)*) => {$(
            if length <= 1u64 << $bits {
                let config = bincode_config().with_limit::<{ 1usize << $bits }>();
                return bincode::serde::decode_from_std_read(&mut input, config);
            }
        )*};
    }
    tiers!(12 16 20 24 28);
    #[cfg(target_pointer_width = "64")]
    tiers!(32 36 40 44 48);
    bincode::serde::decode_from_std_read(&mut input, bincode_config())
}

/// Decodes a value of type `T` with the default codec; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StepError> {
    let mut input = bytes;
    let value = bincode_bounded(&mut input, bytes.len() as u64)
        .map_err(|e| codec_error(Codec::Bincode, "decoding failed", e))?;
    let read = bytes.len() - input.len();
    if read != bytes.len() {
        return Err(StepError::new(
            ErrorKind::Codec,
            format!(
                "{} trailing bytes after a value of type `{}`",
                bytes.len() - read,
                std::any::type_name::<T>()
            ),
        ));
    }
    Ok(value)
}

/// How a codec frames a sequence around its elements' own encodings: a `Vec<T>` of `len`
/// elements is `prefix`, then each element's payload with `separator` between them, then
/// `suffix`. This lets a fan-in travel as one artifact per element, concatenated as it is read,
/// instead of being decoded and encoded again. `None` for a user's codec, whose framing is not
/// known.
pub fn sequence_frame(codec: Codec, len: usize) -> Option<SequenceFrame> {
    match codec {
        Codec::Bincode => {
            // serde's `serialize_seq` writes the length as a `u64` in the configured encoding.
            let mut prefix = Vec::new();
            encode_into(Codec::Bincode, &(len as u64), &mut prefix).ok()?;
            Some(SequenceFrame {
                prefix,
                separator: Vec::new(),
                suffix: Vec::new(),
            })
        }
        Codec::Json => Some(SequenceFrame {
            prefix: b"[".to_vec(),
            separator: b",".to_vec(),
            suffix: b"]".to_vec(),
        }),
        Codec::Custom(_) => None,
    }
}

/// See [`sequence_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceFrame {
    /// Bytes before the first element.
    pub prefix: Vec<u8>,
    /// Bytes between two elements.
    pub separator: Vec<u8>,
    /// Bytes after the last element.
    pub suffix: Vec<u8>,
}

impl SequenceFrame {
    /// The elements' encodings joined as one encoded sequence.
    pub fn join(&self, elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = self.prefix.clone();
        for (i, element) in elements.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(&self.separator);
            }
            out.extend_from_slice(element);
        }
        out.extend_from_slice(&self.suffix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length prefix claiming 2^40 bytes (bincode's varint: tag 253, then a u64) used to
    /// abort the process with a failed allocation; it is an error now, however it is read.
    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        let huge = [253u8, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(decode::<String>(&huge).is_err());
        assert!(decode::<Vec<u8>>(&huge).is_err());
        let mut input = &huge[..];
        let err = decode_from::<String>(Codec::Bincode, &mut input, huge.len() as u64).unwrap_err();
        assert!(err.message.contains("decoding failed"), "{err}");
        // Nested: a vector of one string whose length is the lie.
        let nested = [1u8, 253, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(decode::<Vec<String>>(&nested).is_err());
        // Honest values near a tier's edge still decode.
        let text = "x".repeat(5000);
        assert_eq!(decode::<String>(&encode(&text).unwrap()).unwrap(), text);
    }

    struct Pretty;
    impl ArtifactCodec for Pretty {
        fn name(&self) -> &'static str {
            "pretty-json"
        }
        fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut dyn Write) -> Result<(), String> {
            let mut ser = serde_json::Serializer::pretty(out);
            value
                .erased_serialize(&mut <dyn erased_serde::Serializer>::erase(&mut ser))
                .map_err(|e| e.to_string())
        }
        fn decode(
            &self,
            input: &mut dyn Read,
            visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer) -> Result<(), String>,
        ) -> Result<(), String> {
            let mut de = serde_json::Deserializer::from_reader(input);
            visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
        }
    }
    static PRETTY: Pretty = Pretty;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let bytes = encode(&(vec![1.5f64, 2.5], "x".to_string())).unwrap();
        let back: (Vec<f64>, String) = decode(&bytes).unwrap();
        assert_eq!(back, (vec![1.5, 2.5], "x".to_string()));
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode::<(Vec<f64>, String)>(&longer).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Codec);
        assert!(err.message.contains("trailing"), "{err}");
        assert!(decode::<Vec<f64>>(&[0xff]).is_err());
    }

    #[test]
    fn every_codec_round_trips_through_a_stream() {
        let value = (vec![1u32, 2, 3], Some("z".to_string()));
        for codec in [Codec::Bincode, Codec::Json, Codec::Custom(&PRETTY)] {
            let mut buf = Vec::new();
            encode_into(codec, &value, &mut buf).unwrap();
            let back: (Vec<u32>, Option<String>) = decode_from(codec, &mut buf.as_slice(), buf.len() as u64).unwrap();
            assert_eq!(back, value, "{codec:?}");
        }
        let mut pretty = Vec::new();
        encode_into(Codec::Custom(&PRETTY), &value, &mut pretty).unwrap();
        assert!(String::from_utf8(pretty).unwrap().contains("\n"));
        let err = decode_from::<u32>(Codec::Json, &mut "\"no\"".as_bytes(), 4).unwrap_err();
        assert!(err.message.starts_with("json decoding failed"), "{err}");
    }

    #[test]
    fn a_sequence_is_its_elements_framed() {
        for len in [0usize, 1, 3, 250, 251, 70_000] {
            let values: Vec<(u32, String)> = (0..len).map(|i| (i as u32, format!("v{i}"))).collect();
            for codec in [Codec::Bincode, Codec::Json] {
                let elements: Vec<Vec<u8>> = values
                    .iter()
                    .map(|v| {
                        let mut out = Vec::new();
                        encode_into(codec, v, &mut out).unwrap();
                        out
                    })
                    .collect();
                let mut whole = Vec::new();
                encode_into(codec, &values, &mut whole).unwrap();
                let frame = sequence_frame(codec, len).unwrap();
                assert_eq!(frame.join(&elements), whole, "{} of {len}", codec.name());
            }
        }
        assert!(sequence_frame(Codec::Custom(&PRETTY), 2).is_none());
    }
}
