//! PEM in and out, and private-key loading.
//!
//! Decoding uses x509-parser's PEM reader. Encoding is a few lines here: the CA
//! re-encodes certificates it loaded so the bundle it serves is normalized
//! (no "Bag Attributes" comments or CRLF from whatever tool made the files).

use std::path::Path;

use rcgen::KeyPair;
use x509_parser::pem::Pem;

use super::CaError;

/// Encodes DER as one PEM block with 64-column lines, as OpenSSL writes it.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            b64.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63]
            } else {
                b'='
            });
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        // The alphabet is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// All PEM blocks of a file, as (label, DER).
fn blocks(path: &Path, text: &[u8]) -> Result<Vec<(String, Vec<u8>)>, CaError> {
    let blocks = Pem::iter_from_buffer(text)
        .map(|r| r.map(|p| (p.label, p.contents)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::NotPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if blocks.is_empty() {
        return Err(CaError::NotPem {
            path: path.to_path_buf(),
            reason: "no -----BEGIN ...----- block".into(),
        });
    }
    Ok(blocks)
}

/// The DER of every CERTIFICATE block, in file order; each must parse as X.509.
pub(crate) fn cert_ders(path: &Path, text: &[u8]) -> Result<Vec<Vec<u8>>, CaError> {
    let ders: Vec<Vec<u8>> = blocks(path, text)?
        .into_iter()
        .filter(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| der)
        .collect();
    if ders.is_empty() {
        return Err(CaError::NotPem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    for der in &ders {
        x509_parser::parse_x509_certificate(der).map_err(|e| CaError::BadCert {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(ders)
}

/// Loads the first private key in a file. Besides PKCS#8 this accepts the
/// PKCS#1 ("RSA PRIVATE KEY") and SEC1 ("EC PRIVATE KEY") forms, because that is
/// what Istio's own sample `cacerts` and older OpenSSL write, and rcgen on ring
/// only takes PKCS#8: those are rewrapped as PKCS#8 first.
pub(crate) fn load_key(path: &Path, text: &[u8]) -> Result<KeyPair, CaError> {
    let bad = |reason: &str| CaError::BadKey {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let (label, der) = blocks(path, text)?
        .into_iter()
        .find(|(label, _)| label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| bad("no PRIVATE KEY block"))?;
    let candidates: Vec<Vec<u8>> = match label.as_str() {
        "PRIVATE KEY" => vec![der],
        "RSA PRIVATE KEY" => vec![pkcs8_wrap(RSA_ALG_ID, &der)],
        // SEC1 carries the curve inside, but ring checks it against the
        // PKCS#8 algorithm, so trying each supported curve picks the right one.
        "EC PRIVATE KEY" => vec![
            pkcs8_wrap(EC_P256_ALG_ID, &der),
            pkcs8_wrap(EC_P384_ALG_ID, &der),
        ],
        "ENCRYPTED PRIVATE KEY" => return Err(bad("encrypted keys are not supported")),
        other => return Err(bad(&format!("unsupported key type {other:?}"))),
    };
    candidates
        .into_iter()
        .find_map(|pkcs8| KeyPair::try_from(pkcs8.as_slice()).ok())
        .ok_or_else(|| bad("not a supported key (ECDSA P-256/P-384, RSA 2048..8192 or Ed25519)"))
}

// AlgorithmIdentifier DER for rsaEncryption (with NULL parameters), and for
// id-ecPublicKey with the prime256v1 / secp384r1 named curves.
const RSA_ALG_ID: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
const EC_P256_ALG_ID: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
const EC_P384_ALG_ID: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];

/// PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }
fn pkcs8_wrap(alg_id: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(alg_id);
    body.extend(der_tlv(0x04, key));
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_through_the_parser() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 200] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let pem = pem_encode("TEST", &der);
            let parsed = Pem::iter_from_buffer(pem.as_bytes())
                .next()
                .expect("one block")
                .expect("valid PEM");
            assert_eq!(parsed.label, "TEST");
            assert_eq!(parsed.contents, der, "len {len}");
        }
    }

    #[test]
    fn long_der_lengths() {
        assert_eq!(der_tlv(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(der_tlv(0x04, &[0; 0x1234])[..4], [0x04, 0x82, 0x12, 0x34]);
    }
}
