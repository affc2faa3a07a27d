//! Just enough DER to give a certificate a subject with repeated attributes.
//!
//! rcgen's `DistinguishedName` holds one value per attribute type, but Kubernetes reads a client
//! certificate's groups from repeated O attributes. So a certificate for several groups is issued
//! by rcgen with one, then its subject is swapped for the full one and its TBSCertificate signed
//! again with the CA's key (same key, so the same signature algorithm as rcgen wrote).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rcgen::SigningKey;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const UTF8_STRING: u8 = 0x0c;
const BIT_STRING: u8 = 0x03;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
/// id-at-organizationName (2.5.4.10) and id-at-commonName (2.5.4.3), as whole DER OBJECT IDENTIFIERs.
const OID_ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];

/// A Name of one RDN per organization, then the common name (Go's order: O before CN).
pub(super) fn name(organizations: &[String], common_name: &str) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        encode(SET, &encode(SEQUENCE, &[oid, &encode(UTF8_STRING, value.as_bytes())].concat()))
    };
    let rdns: Vec<u8> = organizations
        .iter()
        .map(|o| rdn(OID_ORGANIZATION, o))
        .chain(std::iter::once(rdn(OID_COMMON_NAME, common_name)))
        .flatten()
        .collect();
    encode(SEQUENCE, &rdns)
}

/// `cert` with its subject replaced by `subject` (a DER Name), signed again by `issuer_key`.
pub(super) fn replace_subject(
    cert: &[u8],
    subject: &[u8],
    issuer_key: &impl SigningKey,
) -> Result<Vec<u8>, rcgen::Error> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let certificate = element(cert, SEQUENCE)?;
    let tbs = element(certificate.content, SEQUENCE)?;
    let algorithm = element(tbs.rest, SEQUENCE)?.whole;
    let tbs = tbs.content;

    // TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature, issuer, validity,
    //                               subject, subjectPublicKeyInfo, [3] extensions }
    let mut rest = tbs;
    for tag in [VERSION, INTEGER, SEQUENCE, SEQUENCE, SEQUENCE] {
        rest = element(rest, tag)?.rest;
    }
    let before = &tbs[..tbs.len() - rest.len()];
    let after = element(rest, SEQUENCE)?.rest;
    let tbs = encode(SEQUENCE, &[before, subject, after].concat());

    let signature = issuer_key.sign(&tbs)?;
    let signature = encode(BIT_STRING, &[&[0u8][..], &signature].concat());
    Ok(encode(SEQUENCE, &[tbs.as_slice(), algorithm, &signature].concat()))
}

/// One DER element at the front of some input.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    /// Tag, length and content.
    whole: &'a [u8],
    /// What follows the element.
    rest: &'a [u8],
}

/// The first element of `input`, which must have tag `want`.
fn element(input: &[u8], want: u8) -> Result<Tlv<'_>, rcgen::Error> {
    split(input).filter(|tlv| tlv.tag == want).ok_or(rcgen::Error::CouldNotParseCertificate)
}

/// `-----BEGIN CERTIFICATE-----`, base64 in 64-column lines, `-----END CERTIFICATE-----`.
pub(super) fn certificate_pem(der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The first element of `input`. Single-byte tags only, which is all a certificate's top
/// levels use.
fn split(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0usize, |len, b| (len << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Tlv { tag, content: &rest[..len], whole: &input[..header + len], rest: &rest[len..] })
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;

    use super::*;

    #[test]
    fn lengths_encode_short_and_long() {
        assert_eq!(encode(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = encode(0x04, &[0; 300]);
        assert_eq!(&long[..4], [0x04, 0x82, 0x01, 0x2c]);
        let input = [long.as_slice(), &[9]].concat();
        let tlv = split(&input).unwrap();
        assert_eq!((tlv.tag, tlv.content.len(), tlv.whole.len(), tlv.rest), (0x04, 300, 304, &[9][..]));
        assert!(split(&[0x04, 0x05, 1]).is_none(), "content shorter than its length");
        assert!(element(&input, 0x30).is_err(), "another tag");
    }

    #[test]
    fn a_name_reads_back_with_every_organization() {
        let der = name(&["dev".into(), "qa".into()], "alice");
        let (_, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let orgs: Vec<&str> = name.iter_organization().map(|o| o.as_str().unwrap()).collect();
        assert_eq!(orgs, ["dev", "qa"]);
        assert_eq!(name.iter_common_name().next().unwrap().as_str().unwrap(), "alice");
    }
}
