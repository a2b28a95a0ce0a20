use std::fs;

use super::*;
use crate::TlsIdentity;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn generate_writes_ca_and_member_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["n1", "n2"])?;
    for file in [
        "ca.pem",
        "ca-key.pem",
        "n1.pem",
        "n1-key.pem",
        "n2.pem",
        "n2-key.pem",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let identity = TlsIdentity::load_member(dir.path(), "n2")?;
    assert_eq!(identity.name(), "n2");
    Ok(())
}

#[cfg(unix)]
#[test]
fn key_files_are_private() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["n1"])?;
    for (file, mode) in [
        ("ca-key.pem", 0o600),
        ("n1-key.pem", 0o600),
        ("ca.pem", 0o644),
        ("n1.pem", 0o644),
    ] {
        let actual = fs::metadata(dir.path().join(file))?.permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{file}");
    }
    Ok(())
}

#[test]
fn member_certificates_carry_the_expected_names() -> TestResult {
    let dir = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["node-1.example"])?;
    let der = read_cert(&member_cert_path(dir.path(), "node-1.example"))?;
    let cert = webpki::EndEntityCert::try_from(&der)?;
    let dns: Vec<&str> = cert.valid_dns_names().collect();
    assert_eq!(dns, ["node-1.example", "localhost"]);
    for name in ["node-1.example", "localhost", "127.0.0.1", "::1"] {
        let server_name = rustls_pki_types::ServerName::try_from(name)?;
        cert.verify_is_valid_for_subject_name(&server_name)?;
    }
    Ok(())
}

#[test]
fn ensure_creates_only_what_is_missing() -> TestResult {
    let dir = tempfile::tempdir()?;
    ensure_cluster(dir.path(), &["n1"])?;
    let ca = fs::read(ca_cert_path(dir.path()))?;
    let n1 = fs::read(member_cert_path(dir.path(), "n1"))?;

    ensure_cluster(dir.path(), &["n1", "n2"])?;
    assert_eq!(fs::read(ca_cert_path(dir.path()))?, ca, "CA must be reused");
    assert_eq!(fs::read(member_cert_path(dir.path(), "n1"))?, n1);
    assert!(member_cert_path(dir.path(), "n2").is_file());
    TlsIdentity::load_member(dir.path(), "n2")?;

    // A member missing only its key is reissued as a whole.
    fs::remove_file(member_key_path(dir.path(), "n1"))?;
    ensure_cluster(dir.path(), &["n1", "n2"])?;
    assert_ne!(fs::read(member_cert_path(dir.path(), "n1"))?, n1);
    TlsIdentity::load_member(dir.path(), "n1")?;
    Ok(())
}

#[test]
fn ensure_replaces_members_when_the_ca_is_gone() -> TestResult {
    let dir = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["n1"])?;
    let n1 = fs::read(member_cert_path(dir.path(), "n1"))?;
    fs::remove_file(ca_cert_path(dir.path()))?;
    ensure_cluster(dir.path(), &["n1"])?;
    assert_ne!(fs::read(member_cert_path(dir.path(), "n1"))?, n1);
    Ok(())
}

#[test]
fn ensure_without_the_ca_key_names_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["n1"])?;
    fs::remove_file(ca_key_path(dir.path()))?;
    // Nothing to issue: fine without the key.
    ensure_cluster(dir.path(), &["n1"])?;
    let err = ensure_cluster(dir.path(), &["n1", "n2"])
        .err()
        .ok_or("expected an error")?;
    let message = err.to_string();
    assert!(
        message.contains("ca-key.pem") && message.contains("n2"),
        "{message}"
    );
    Ok(())
}

#[test]
fn ensure_refuses_a_ca_key_that_does_not_match() -> TestResult {
    let dir = tempfile::tempdir()?;
    let other = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["n1"])?;
    generate_cluster(other.path(), &["n1"])?;
    fs::copy(ca_key_path(other.path()), ca_key_path(dir.path()))?;
    let err = ensure_cluster(dir.path(), &["n2"])
        .err()
        .ok_or("expected an error")?;
    assert!(err.to_string().contains("does not belong"), "{err}");
    Ok(())
}

#[test]
fn invalid_member_names_are_refused() {
    for names in [
        &["localhost"][..],
        &[""],
        &["a/b"],
        &["../x"],
        &["ca"],
        &["n1-key"],
        &["n1", "N1"],
    ] {
        assert!(
            generate_cluster(Path::new("/nonexistent-never-created"), names).is_err(),
            "{names:?}"
        );
    }
}

#[test]
fn load_errors_name_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    generate_cluster(dir.path(), &["n1"])?;
    let ca = ca_cert_path(dir.path());
    let cert = member_cert_path(dir.path(), "n1");
    let key = member_key_path(dir.path(), "n1");
    let missing = dir.path().join("nope.pem");

    let check = |ca: &Path, cert: &Path, key: &Path, bad: &Path, what: &str| {
        let err = TlsIdentity::load(ca, cert, key).err();
        match err {
            Some(NetworkError::Certificate { path, reason }) => {
                assert_eq!(path, bad);
                assert!(reason.contains(what), "{reason}");
            }
            other => panic!(
                "expected a certificate error for {}, got {other:?}",
                bad.display()
            ),
        }
    };
    check(&missing, &cert, &key, &missing, "not found");
    check(&ca, &missing, &key, &missing, "not found");
    check(&ca, &cert, &missing, &missing, "not found");

    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "not pem at all")?;
    check(&garbage, &cert, &key, &garbage, "no PEM certificate");
    check(&ca, &garbage, &key, &garbage, "no PEM certificate");
    check(&ca, &cert, &garbage, &garbage, "no PEM private key");

    // A key that belongs to another certificate is caught when the configuration is built.
    let err = TlsIdentity::load(&ca, &cert, &ca_key_path(dir.path())).err();
    assert!(matches!(err, Some(NetworkError::TlsConfig(_))), "{err:?}");
    Ok(())
}
