//! A private certificate authority for one cluster, and member certificates signed by it.
//!
//! Layout of a certificate directory:
//!
//! | file           | contents                                   | mode |
//! |----------------|--------------------------------------------|------|
//! | `ca.pem`       | the cluster CA certificate                 | 0644 |
//! | `ca-key.pem`   | the CA's private key (PKCS#8)              | 0600 |
//! | `NAME.pem`     | member NAME's certificate, signed by the CA | 0644 |
//! | `NAME-key.pem` | member NAME's private key (PKCS#8)         | 0600 |
//!
//! A member certificate names the member in its first DNS subject alternative name (and its
//! common name) and is valid for `NAME`, `localhost`, `127.0.0.1` and `::1`, for both TLS server
//! and client authentication, so one file serves both ends of a cluster connection.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, DnsName};

use crate::NetworkError;

/// Common name of every cluster CA this module creates. Reusing an existing CA rebuilds its
/// issuer name from this constant (rcgen cannot read a name back from a certificate), so it
/// must never change.
const CA_COMMON_NAME: &str = "Mycelium cluster CA";
const ORGANIZATION: &str = "Mycelium";
const CA_VALIDITY_YEARS: i32 = 100;
const MEMBER_VALIDITY_YEARS: i32 = 20;

/// Path of the CA certificate in `dir`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// Path of the CA private key in `dir`.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca-key.pem")
}

/// Path of member `name`'s certificate in `dir`.
pub fn member_cert_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pem"))
}

/// Path of member `name`'s private key in `dir`.
pub fn member_key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-key.pem"))
}

/// Creates a new cluster CA and a certificate for every member in `out_dir`, replacing any
/// files already there. The directory is created if needed.
pub fn generate_cluster(out_dir: &Path, members: &[&str]) -> Result<(), NetworkError> {
    validate_members(members)?;
    create_dir(out_dir)?;
    let ca = new_ca(out_dir)?;
    for member in members {
        write_member(out_dir, &ca, member)?;
    }
    Ok(())
}

/// Creates only what is missing in `out_dir`: the CA if there is none, and a certificate for
/// each member that lacks its certificate or key. An existing CA is reused, so certificates
/// already handed out stay valid.
///
/// If the CA certificate itself is missing, a new CA is made and every member certificate is
/// reissued, since the old ones could no longer be verified.
pub fn ensure_cluster(out_dir: &Path, members: &[&str]) -> Result<(), NetworkError> {
    validate_members(members)?;
    create_dir(out_dir)?;
    let ca_cert = ca_cert_path(out_dir);
    if !ca_cert.exists() {
        tracing::info!(dir = %out_dir.display(), "no cluster CA found; generating a new one");
        return generate_cluster(out_dir, members);
    }
    let missing: Vec<&str> = members
        .iter()
        .copied()
        .filter(|m| !member_cert_path(out_dir, m).exists() || !member_key_path(out_dir, m).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let ca = load_ca(out_dir, &missing)?;
    for member in missing {
        tracing::info!(member, dir = %out_dir.display(), "issuing member certificate");
        write_member(out_dir, &ca, member)?;
    }
    Ok(())
}

/// The CA's signing material, enough to issue member certificates.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + CA_VALIDITY_YEARS, 1, 1);
    params
}

fn new_ca(dir: &Path) -> Result<Ca, NetworkError> {
    let key = KeyPair::generate()?;
    let params = ca_params();
    let cert = params.self_signed(&key)?;
    write_file(&ca_key_path(dir), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&ca_cert_path(dir), cert.pem().as_bytes(), 0o644)?;
    Ok(Ca { params, key })
}

fn load_ca(dir: &Path, needed_for: &[&str]) -> Result<Ca, NetworkError> {
    let key_path = ca_key_path(dir);
    let cert_path = ca_cert_path(dir);
    let key_pem = fs::read_to_string(&key_path).map_err(|e| NetworkError::Certificate {
        path: key_path.clone(),
        reason: format!(
            "cannot read the CA key ({e}); it is needed to issue certificates for {needed_for:?}"
        ),
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| NetworkError::Certificate {
        path: key_path.clone(),
        reason: format!("not a usable private key: {e}"),
    })?;
    let der = read_cert(&cert_path)?;
    let ca_cert = webpki::EndEntityCert::try_from(&der).map_err(|e| NetworkError::Certificate {
        path: cert_path.clone(),
        reason: format!("not a valid X.509 certificate: {e}"),
    })?;
    if ca_cert.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
        return Err(NetworkError::Certificate {
            path: key_path,
            reason: format!(
                "does not belong to the CA certificate {}",
                cert_path.display()
            ),
        });
    }
    let params = ca_params();
    // rcgen signs with the issuer name rebuilt from our constants; a CA made by another tool has
    // a different subject, and certificates issued under the wrong name would never verify.
    if !name_matches(ca_cert.subject(), &params, &key)? {
        return Err(NetworkError::Certificate {
            path: cert_path,
            reason: format!(
                "this CA was not created by mycelium (its subject is not CN={CA_COMMON_NAME}, \
                 O={ORGANIZATION}); issue certificates for {needed_for:?} with the tool that made it"
            ),
        });
    }
    Ok(Ca { params, key })
}

/// Whether `subject` (DER, without the outer SEQUENCE) is the name rcgen writes for `params`.
fn name_matches(
    subject: &[u8],
    params: &CertificateParams,
    key: &KeyPair,
) -> Result<bool, NetworkError> {
    // Self-sign a throwaway certificate under `params`: its issuer field is exactly what every
    // member certificate issued under `params` will carry.
    let probe = params.self_signed(key)?;
    let parsed = webpki::EndEntityCert::try_from(probe.der())
        .map_err(|e| NetworkError::TlsConfig(format!("parsing a generated certificate: {e}")))?;
    Ok(parsed.issuer() == subject)
}

fn write_member(dir: &Path, ca: &Ca, name: &str) -> Result<(), NetworkError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName(name.try_into()?),
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + MEMBER_VALIDITY_YEARS, 1, 1);

    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer)?;
    write_file(
        &member_key_path(dir, name),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&member_cert_path(dir, name), cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Member names become file names and DNS names, and `localhost` is in every member's
/// certificate, so it cannot identify one member.
fn validate_members(members: &[&str]) -> Result<(), NetworkError> {
    let mut seen = std::collections::HashSet::new();
    for &m in members {
        let valid_dns = DnsName::try_from(m).is_ok();
        if !valid_dns || m.is_empty() || m.len() > 255 || m.eq_ignore_ascii_case("localhost") {
            return Err(NetworkError::TlsConfig(format!(
                "invalid member name {m:?}: use a DNS-style name such as n1 or node-2.example, \
                 other than localhost"
            )));
        }
        if m.eq_ignore_ascii_case("ca") || m.to_ascii_lowercase().ends_with("-key") {
            return Err(NetworkError::TlsConfig(format!(
                "invalid member name {m:?}: its files would collide with the CA's or a key file"
            )));
        }
        if !seen.insert(m.to_ascii_lowercase()) {
            return Err(NetworkError::TlsConfig(format!(
                "member name {m:?} is listed twice"
            )));
        }
    }
    Ok(())
}

/// Reads the first certificate of a PEM file, naming the file in every error.
pub(crate) fn read_cert(path: &Path) -> Result<CertificateDer<'static>, NetworkError> {
    let pem = read_pem(path)?;
    CertificateDer::from_pem_slice(&pem).map_err(|e| NetworkError::Certificate {
        path: path.to_owned(),
        reason: format!("no PEM certificate could be parsed: {e}"),
    })
}

pub(crate) fn read_pem(path: &Path) -> Result<Vec<u8>, NetworkError> {
    fs::read(path).map_err(|e| NetworkError::Certificate {
        path: path.to_owned(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "file not found (generate it with `mycelium certs`)".to_owned()
        } else {
            format!("cannot read: {e}")
        },
    })
}

fn create_dir(dir: &Path) -> Result<(), NetworkError> {
    fs::create_dir_all(dir).map_err(|e| NetworkError::Certificate {
        path: dir.to_owned(),
        reason: format!("cannot create the certificate directory: {e}"),
    })
}

/// Writes through a temporary file and a rename, so a crash never leaves a half-written key and
/// a key is never readable by others, not even for an instant.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), NetworkError> {
    let err = |e: std::io::Error| NetworkError::Certificate {
        path: path.to_owned(),
        reason: format!("cannot write: {e}"),
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    // `mode` applies only when the file is created; a stale temporary file keeps its old mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
    }
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Average Gregorian year; being off by a day around New Year does not matter because
    // validity starts a whole year back.
    1970 + (secs / 31_556_952) as i32
}

#[cfg(test)]
mod tests;
