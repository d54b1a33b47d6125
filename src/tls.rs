//! TLS for every link vakt serves or reaches: the one crypto provider (ring), and the
//! certificates, keys and trusted roots each link loads from PEM files, with errors that
//! name the setting the file came from.
//!
//! PostgreSQL is the exception: sqlx reads `sslmode` and `sslrootcert` from the database URL
//! itself, with the same provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN for vakt's HTTPS: HTTP/1.1 is all the server speaks.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider every TLS configuration of vakt is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default provider, for anything that builds a configuration
/// without naming one. Calling it again changes nothing.
pub fn install_provider() {
    // Err only when a provider is installed already: ring, since nothing else is linked.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A PEM file named by a setting, as `mqtt_ca (VAKT_MQTT_CA)`.
#[derive(Debug, Clone, Copy)]
pub struct PemFile<'a> {
    pub setting: &'static str,
    pub path: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}: cannot read {}: {why}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        why: std::io::Error,
    },
    #[error("{setting}: {} holds no {what} in PEM form", path.display())]
    NoPem {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{setting}: {} is not usable: {why}", path.display())]
    Bad {
        setting: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{0} is set without {1}: give both, or neither")]
    Half(&'static str, &'static str),
    #[error("{0}")]
    Mismatch(String),
}

impl TlsError {
    fn bad(file: PemFile, why: impl ToString) -> TlsError {
        TlsError::Bad {
            setting: file.setting,
            path: file.path.to_owned(),
            why: why.to_string(),
        }
    }
}

fn read(file: PemFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file.path).map_err(|why| TlsError::Read {
        setting: file.setting,
        path: file.path.to_owned(),
        why,
    })
}

/// Every certificate in the file, in order (a leaf and its intermediates, or several CAs).
pub fn certificates(file: PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::bad(file, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            setting: file.setting,
            path: file.path.to_owned(),
            what: "certificate (-----BEGIN CERTIFICATE-----)",
        });
    }
    Ok(certs)
}

/// The file's private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(file: PemFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
            setting: file.setting,
            path: file.path.to_owned(),
            what: "private key (-----BEGIN PRIVATE KEY-----)",
        },
        e => TlsError::bad(file, e),
    })
}

/// The roots a server's certificate must chain to: the CA file's, or the system's.
fn roots(ca: Option<PemFile>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(file) => {
            for cert in certificates(file)? {
                roots.add(cert).map_err(|e| TlsError::bad(file, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "cannot read a system root certificate");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(roots = added, "system root certificates loaded");
        }
    }
    Ok(roots)
}

/// A client that checks the server's certificate against `ca` (or the system's roots) and
/// the name it was reached by, and shows `client` (certificate, key) when asked.
pub fn client_config(
    ca: Option<PemFile>,
    client: Option<(PemFile, PemFile)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring offers the default protocol versions")
        .with_root_certificates(roots(ca)?);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| mismatch(cert, key, e))?,
    };
    Ok(Arc::new(config))
}

/// A server showing `cert` (its chain, leaf first) with `key`, offering `alpn`.
pub fn server_config(
    cert: PemFile,
    key: PemFile,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring offers the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| mismatch(cert, key, e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn mismatch(cert: PemFile, key: PemFile, e: rustls::Error) -> TlsError {
    TlsError::Mismatch(format!(
        "{} = {} and {} = {} do not go together: {e}",
        cert.setting,
        cert.path.display(),
        key.setting,
        key.path.display()
    ))
}

/// Both halves of a certificate and key pair, or neither.
pub fn pair<'a>(
    cert: Option<PemFile<'a>>,
    key: Option<PemFile<'a>>,
    names: (&'static str, &'static str),
) -> Result<Option<(PemFile<'a>, PemFile<'a>)>, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::Half(names.0, names.1)),
        (None, Some(_)) => Err(TlsError::Half(names.1, names.0)),
    }
}

/// What an operator should hear about a PostgreSQL URL's TLS, if anything. sqlx reads
/// `sslmode` like libpq, default `prefer`: encrypted when the server offers it, and no check
/// of who answers. Unlike libpq, it adds the system's roots to `sslrootcert`, so `verify-ca`
/// passes any certificate a system root signed, whatever its name.
pub fn postgres_tls_warning(url: &str) -> Option<&'static str> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    let params = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let param = |name: &str| {
        params
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .next_back()
    };
    // A Unix socket never leaves the machine.
    if param("host").is_some_and(|h| h.starts_with('/') || h.starts_with("%2F")) {
        return None;
    }
    match param("sslmode").unwrap_or("prefer") {
        "verify-full" => None,
        "verify-ca" => Some(
            "the database URL has sslmode=verify-ca, which does not check the server's name, and \
             vakt's PostgreSQL driver trusts the system's roots besides sslrootcert: any \
             certificate they signed passes; use sslmode=verify-full",
        ),
        "require" => Some(
            "the database URL has sslmode=require: encrypted, but anyone on the path can answer \
             in the server's place; use sslmode=verify-full with sslrootcert",
        ),
        _ => Some(
            "the database connection is not verified and may not even be encrypted (sslmode \
             unset, disable, allow or prefer); use sslmode=verify-full with sslrootcert",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_verified_postgresql_connection_goes_without_a_warning() {
        let warned = |url: &str| postgres_tls_warning(url).is_some();
        assert!(!warned(
            "postgres://vakt@db:5432/vakt?sslmode=verify-full&sslrootcert=/etc/vakt/db-ca.pem"
        ));
        assert!(warned("postgres://vakt@db:5432/vakt"));
        assert!(warned("postgresql://vakt@db/vakt?sslmode=require"));
        assert!(warned(
            "postgres://vakt@db/vakt?sslmode=verify-ca&sslrootcert=/ca.pem"
        ));
        assert!(warned(
            "postgres://vakt@db/vakt?sslmode=verify-full&sslmode=disable"
        ));
        assert!(!warned("postgres:///vakt?host=/var/run/postgresql"));
        assert!(!warned("sqlite://vakt-data/vakt.db"));
    }

    #[test]
    fn a_certificate_and_a_key_that_do_not_belong_together_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let (cert, key) = (dir.join("one.crt"), dir.join("other.key"));
        std::fs::write(&cert, one.cert.pem()).unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let err = server_config(
            PemFile {
                setting: "tls_cert (VAKT_TLS_CERT)",
                path: &cert,
            },
            PemFile {
                setting: "tls_key (VAKT_TLS_KEY)",
                path: &key,
            },
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls_cert (VAKT_TLS_CERT)"), "{err}");
        assert!(err.contains("tls_key (VAKT_TLS_KEY)"), "{err}");
        assert!(err.contains("do not go together"), "{err}");
    }
}
