//! mqtts for a simulated device: it trusts exactly the CA it was provisioned with, as a
//! device's firmware would, and checks that the broker's certificate names the host it
//! dialled. TLS 1.2 or 1.3, with the ring provider.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The TLS a device connects with.
#[derive(Clone)]
pub struct DeviceTls(Arc<ClientConfig>);

impl fmt::Debug for DeviceTls {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("DeviceTls(..)")
    }
}

impl DeviceTls {
    /// Trusts the CA certificate(s) in the PEM file at `path`.
    pub fn from_ca_file(path: &Path) -> anyhow::Result<DeviceTls> {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        DeviceTls::from_ca_pem(&pem).with_context(|| format!("the CA file {}", path.display()))
    }

    /// Trusts the CA certificate(s) in `pem`.
    pub fn from_ca_pem(pem: &[u8]) -> anyhow::Result<DeviceTls> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.context("not a PEM certificate")?)?;
        }
        if roots.is_empty() {
            bail!("holds no certificate (-----BEGIN CERTIFICATE-----)");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(DeviceTls(Arc::new(config)))
    }

    pub(crate) fn transport(&self) -> rumqttc::Transport {
        rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused_naming_it() {
        let err = DeviceTls::from_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
        let err = DeviceTls::from_ca_pem(b"not a certificate").unwrap_err();
        assert!(format!("{err:#}").contains("no certificate"), "{err:#}");
    }
}
