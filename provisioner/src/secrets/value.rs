//! Secret values: generation and keeping them out of errors and Debug output.

use anyhow::Result;
use ring::rand::{SecureRandom, SystemRandom};

use crate::aws::AwsError;

/// Characters of generated secrets: RDS forbids `/`, `@`, `"` and space in passwords.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const DB_PASSWORD_LEN: usize = 32;
pub const ADMIN_TOKEN_LEN: usize = 48;

/// A secret value; Debug prints `******`.
#[derive(Clone)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("******")
    }
}

/// An AWS error with the secret's value (if AWS echoed it) masked.
pub(crate) fn redact<T>(result: Result<T>, value: &SecretValue) -> Result<T> {
    result.map_err(|err| match err.downcast::<AwsError>() {
        Ok(e) => anyhow::Error::new(AwsError {
            message: e.message.replace(&value.0, "******"),
            ..e
        }),
        Err(other) => other,
    })
}

/// `len` characters from [A-Za-z0-9], uniformly: bytes >= 248 (4 x 62) are rejected.
pub fn generate(len: usize) -> Result<SecretValue> {
    let rng = SystemRandom::new();
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        for &b in buf.iter().filter(|&&b| b < limit) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
        }
    }
    Ok(SecretValue(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_use_the_alphabet_and_differ() {
        let a = generate(DB_PASSWORD_LEN).unwrap();
        let b = generate(ADMIN_TOKEN_LEN).unwrap();
        assert_eq!(a.0.len(), 32);
        assert_eq!(b.0.len(), 48);
        assert!(a
            .0
            .bytes()
            .chain(b.0.bytes())
            .all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.0, generate(DB_PASSWORD_LEN).unwrap().0);
        assert_eq!(format!("{a:?}"), "******");
    }

    #[test]
    fn every_character_can_come_out() {
        let text: String = (0..40).map(|_| generate(48).unwrap().0).collect();
        assert!(ALPHABET.iter().all(|c| text.as_bytes().contains(c)));
    }

    #[test]
    fn errors_never_carry_the_value() {
        let value = SecretValue("s3cretValue".into());
        let err: Result<()> = Err(anyhow::Error::new(AwsError {
            operation: "create".into(),
            code: Some("ValidationException".into()),
            message: "Value 's3cretValue' at 'value' failed".into(),
        }));
        let text = format!("{:#}", redact(err, &value).unwrap_err());
        assert!(
            !text.contains("s3cretValue") && text.contains("******"),
            "{text}"
        );
    }
}
