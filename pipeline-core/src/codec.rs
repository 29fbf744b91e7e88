//! How values cross step boundaries: the bound every step input and output meets, and the
//! default codec (`bincode` 2 through serde).

use crate::error::{ErrorKind, StepError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that can flow between steps: serializable (to become an artifact), clonable (one
/// output may feed several steps) and sendable to the thread or process that runs the step.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot flow between pipeline steps",
    label = "this type must implement `serde::Serialize`, `serde::de::DeserializeOwned`, `Clone` and `Send`",
    note = "step inputs and outputs become artifacts, so they need serde; derive `Serialize, Deserialize, Clone` on your own types"
)]
pub trait ComponentValue: Serialize + DeserializeOwned + Clone + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> ComponentValue for T {}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value with the default codec.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StepError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StepError::from_std(ErrorKind::Codec, &e))
}

/// Decodes a value of type `T` with the default codec; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StepError> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| StepError::from_std(ErrorKind::Codec, &e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
