//! The authkey challenge–response of Python's `multiprocessing.connection`,
//! in both of its forms.
//!
//! A challenge is `#CHALLENGE#` followed by a message; the answer is an HMAC
//! of the message keyed with the authkey. CPython 3.11 and older send a
//! 20-byte random message and expect a bare 16-byte HMAC-MD5. CPython 3.12
//! and newer send `{sha256}` followed by 40 random bytes and answer with
//! `{name}` followed by the HMAC named (over the whole message, prefix
//! included, so a peer cannot downgrade it); they still accept a bare
//! HMAC-MD5 answer from an old peer, and answer an old peer's 20-byte message
//! with a bare HMAC-MD5. This module does what CPython 3.12 does: it sends
//! the modern challenge, and speaks the legacy form only to a peer that
//! speaks it.

use hmac::{Hmac, Mac};
use std::io;

/// The prefix of a challenge frame.
pub(crate) const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// The frame that accepts an answer.
pub(crate) const WELCOME: &[u8] = b"#WELCOME#";
/// The frame that rejects an answer.
pub(crate) const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a modern challenge.
const MESSAGE_LENGTH: usize = 40;
/// The message of a legacy challenge: 20 random bytes, no prefix.
const LEGACY_MESSAGE_LENGTH: usize = 20;
/// A legacy answer: a bare HMAC-MD5.
const MD5_LENGTH: usize = 16;
/// The longest digest name CPython allows (`sha3_256`).
const MAX_DIGEST_NAME: usize = 8;
/// The digest a challenge of ours names (CPython's default).
const OFFERED: Digest = Digest::Sha256;

/// An HMAC digest this crate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    fn parse(name: &[u8]) -> Result<Digest, String> {
        match name {
            b"md5" => Ok(Digest::Md5),
            b"sha256" => Ok(Digest::Sha256),
            b"sha384" => Ok(Digest::Sha384),
            // CPython allows these too; RustCrypto has them, but no Python
            // sends them unless told to.
            b"sha3_256" | b"sha3_384" => Err(format!(
                "the peer asks for HMAC-{}, which multiproc does not support \
                 (it supports md5, sha256 and sha384)",
                String::from_utf8_lossy(name)
            )),
            other => Err(format!(
                "the peer names an unknown digest {:?}",
                String::from_utf8_lossy(other)
            )),
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length: `new_from_slice` cannot fail.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message),
        }
    }
}

/// Splits a challenge message or an answer into the digest it names and the
/// rest: `None` for the legacy form (a 20-byte message or a 16-byte answer,
/// no prefix). CPython's `_get_digest_name_and_payload`.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8]), String> {
    if message.len() == LEGACY_MESSAGE_LENGTH || message.len() == MD5_LENGTH {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        let end = message.len().min(MAX_DIGEST_NAME + 2);
        if let Some(close) = message[1..end].iter().position(|&b| b == b'}') {
            let name = &message[1..1 + close];
            return Ok((Some(Digest::parse(name)?), &message[2 + close..]));
        }
    }
    Err(format!(
        "malformed handshake message of {} bytes: neither the legacy length nor a \
         {{digest}} prefix",
        message.len()
    ))
}

/// A fresh challenge message (what follows `#CHALLENGE#`): `{sha256}` and
/// 40 random bytes.
pub(crate) fn new_challenge() -> io::Result<Vec<u8>> {
    let mut random = [0u8; MESSAGE_LENGTH];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
    let mut message = format!("{{{}}}", OFFERED.name()).into_bytes();
    message.extend_from_slice(&random);
    Ok(message)
}

/// The answer to a peer's challenge message: a bare HMAC-MD5 for a legacy
/// peer, else `{name}` and the HMAC it names. CPython's `_create_response`.
pub(crate) fn answer(key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    if message.len() < LEGACY_MESSAGE_LENGTH {
        return Err(format!("challenge too short: {} bytes", message.len()));
    }
    match digest_and_payload(message)?.0 {
        None => Ok(Digest::Md5.mac(key, message)),
        Some(digest) => {
            let mut response = format!("{{{}}}", digest.name()).into_bytes();
            response.extend_from_slice(&digest.mac(key, message));
            Ok(response)
        }
    }
}

/// Checks a peer's answer to our challenge `message`, in constant time. A
/// bare answer is HMAC-MD5 (a legacy peer); a prefixed one names its digest.
/// CPython's `_verify_challenge`.
pub(crate) fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<(), String> {
    let (digest, mac) = digest_and_payload(response)?;
    let digest = digest.unwrap_or(Digest::Md5);
    let expected = digest.mac(key, message);
    if expected.len() != mac.len() {
        return Err(format!(
            "expected an HMAC-{} of {} bytes, got {}",
            digest.name(),
            expected.len(),
            mac.len()
        ));
    }
    let ok = match digest {
        Digest::Md5 => matches::<Hmac<md5::Md5>>(key, message, mac),
        Digest::Sha256 => matches::<Hmac<sha2::Sha256>>(key, message, mac),
        Digest::Sha384 => matches::<Hmac<sha2::Sha384>>(key, message, mac),
    };
    if ok {
        Ok(())
    } else {
        Err("the digest received was wrong (the peer's authkey differs)".to_string())
    }
}

/// Whether `mac` is the HMAC of `message` under `key`, compared in constant
/// time (`verify_slice`).
fn matches<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(message);
    m.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Vectors computed with CPython's `hmac` module:
    // hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", d).hexdigest()
    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";

    #[test]
    fn macs_match_known_vectors() {
        assert_eq!(
            hex(&Digest::Md5.mac(b"key", FOX)),
            "80070713463e7749b90c2dc24911e275"
        );
        assert_eq!(
            hex(&Digest::Sha256.mac(b"key", FOX)),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn a_modern_challenge_names_sha256_and_is_fresh() {
        let a = new_challenge().unwrap();
        let b = new_challenge().unwrap();
        assert!(a.starts_with(b"{sha256}"));
        assert_eq!(a.len(), 8 + MESSAGE_LENGTH);
        assert_ne!(a, b);
    }

    #[test]
    fn answers_verify_in_both_forms() {
        let modern = new_challenge().unwrap();
        let response = answer(b"secret", &modern).unwrap();
        assert!(response.starts_with(b"{sha256}"));
        verify(b"secret", &modern, &response).unwrap();
        assert!(verify(b"other", &modern, &response).is_err());

        // A legacy (CPython 3.11) server's 20-byte challenge gets a bare MD5.
        let legacy = [7u8; LEGACY_MESSAGE_LENGTH];
        let response = answer(b"secret", &legacy).unwrap();
        assert_eq!(response, Digest::Md5.mac(b"secret", &legacy));
        // A legacy client answers our modern challenge with a bare MD5.
        let bare = Digest::Md5.mac(b"secret", &modern);
        verify(b"secret", &modern, &bare).unwrap();
        assert!(verify(b"secret", &modern, &Digest::Md5.mac(b"wrong", &modern)).is_err());
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let modern = new_challenge().unwrap();
        for bad in [
            &b""[..],
            b"{",
            b"{}",
            b"{sha256",
            b"{sha3_256}abc",
            b"{whirlpool}abcdefghijklmnop",
            b"{sha256}short",
            &[0xff; 255],
        ] {
            assert!(verify(b"k", &modern, bad).is_err(), "{bad:?}");
        }
        assert!(answer(b"k", b"short").is_err());
        assert!(answer(b"k", b"{nope}0123456789abcdefghij").is_err());
    }
}
