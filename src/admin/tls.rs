//! HTTPS for the admin listener (rustls): a PEM certificate chain and key, reloaded on
//! SIGHUP so a renewed certificate needs no restart. The handshakes run in `listen`, each on
//! its connection's task, so a client that stalls mid-handshake holds up no one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: crate::files::FileError,
    },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: no certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} and {}: {message}", cert.display(), key.display())]
    Key {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The admin certificate: the files it comes from and the key in use.
#[derive(Debug)]
pub struct AdminCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl AdminCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<AdminCert>, TlsError> {
        Ok(Arc::new(AdminCert {
            current: ArcSwap::from_pointee(certified_key(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .store(Arc::new(certified_key(&self.cert, &self.key)?));
        Ok(())
    }

    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for AdminCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        crate::files::read_regular(path, crate::files::SMALL_FILE).map_err(|source| {
            TlsError::Read {
                path: path.to_owned(),
                source,
            }
        })
    };
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem_error(key, e))?;
    let key_error = |message: String| TlsError::Key {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message,
    };
    let provider = rustls::crypto::ring::default_provider();
    let certified =
        CertifiedKey::from_der(chain, private, &provider).map_err(|e| key_error(e.to_string()))?;
    Ok(certified)
}
