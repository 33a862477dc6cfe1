//! Development certificates: a CA for one cluster and a certificate per node, laid out as
//! [`TlsFiles::in_dir`] reads them. For tests, samples, demos and a first secure group
//! (`fencekit certs init`); production groups use their own PKI, with the same identity URIs.
//!
//! ```text
//! DIR/ca.crt            the CA certificate (it names fencekit://<cluster>)
//! DIR/ca.key            the CA's private key (mode 0600): whoever holds it can mint members
//! DIR/node-<id>/ca.crt  a copy of the CA certificate
//! DIR/node-<id>/node.crt  the node's certificate: fencekit://<cluster>/<id>, server and client
//! DIR/node-<id>/node.key  its private key (mode 0600)
//! DIR/store/store.crt   the fenced store's certificate: fencekit://<cluster>/store and its
//!                       host names, server only (made by `add_store`)
//! DIR/store/store.key   its private key; DIR/store/ca.crt a copy of the CA certificate
//! ```
//!
//! Keys are ECDSA P-256. The certificates do not expire (rcgen's default validity): rotate by
//! replacing the files, which running nodes pick up by themselves.
//!
//! Available with the crate's `dev-certs` feature.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::cluster::ClusterId;
use crate::error::TransportError;
use crate::token::NodeId;
use crate::transport::tcp::tls::{self, Identity, TlsFiles};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";

/// The directory of node `id`'s files under `dir`.
pub fn node_dir(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node-{id}"))
}

fn file_error(op: &'static str, path: &Path, source: std::io::Error) -> TransportError {
    TransportError::File {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn cert_error(what: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(what.to_string())
}

/// Makes a new CA for `cluster` in `dir` (created if missing), and a certificate for each of
/// `nodes`. Refuses a directory that already holds a CA.
pub fn init(dir: &Path, cluster: ClusterId, nodes: &[NodeId]) -> Result<(), TransportError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| file_error("create directory", dir, e))?;
    if dir.join(CA_KEY).exists() || dir.join(CA_CERT).exists() {
        return Err(cert_error(format!(
            "{} already holds a CA: use `add` for another node, or an empty directory",
            dir.display()
        )));
    }
    let key = KeyPair::generate().map_err(cert_error)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("fencekit development CA of cluster {cluster}"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![uri(&format!("fencekit://{cluster}"))?];
    let cert = params.self_signed(&key).map_err(cert_error)?;
    write_new(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
    for &node in nodes {
        add(dir, node)?;
    }
    Ok(())
}

/// Makes a certificate for `node` with the CA in `dir` (made by [`init`]), in its own
/// directory. Refuses a node that already has one.
pub fn add(dir: &Path, node: NodeId) -> Result<TlsFiles, TransportError> {
    let ca = Ca::open(dir)?;
    let id = Identity {
        cluster: ca.cluster,
        node,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("fencekit {id}"));
    params.subject_alt_names = vec![uri(&id.uri())?];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let out = node_dir(dir, node);
    ca.issue(
        params,
        &out,
        TlsFiles::in_dir(&out),
        &format!("node {node}"),
    )
}

/// The directory of the store's files under `dir`.
pub fn store_dir(dir: &Path) -> PathBuf {
    dir.join("store")
}

/// Makes the fenced store's certificate with the CA in `dir`, in `dir/store/`: it names
/// `fencekit://<cluster>/store` (no node: it cannot join the group) and `hosts`, the DNS
/// names and IP addresses clients reach the store by (they check it, as web TLS does). It
/// serves only; it cannot act as a client. Refuses a store that already has one.
pub fn add_store(dir: &Path, hosts: &[String]) -> Result<TlsFiles, TransportError> {
    if hosts.is_empty() {
        return Err(cert_error(
            "the store's certificate needs at least one host name or IP address",
        ));
    }
    let ca = Ca::open(dir)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("fencekit store of cluster {}", ca.cluster),
    );
    params.subject_alt_names = vec![uri(&tls::store_uri(ca.cluster))?];
    for host in hosts {
        params.subject_alt_names.push(match host.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.as_str()
                    .try_into()
                    .map_err(|e| cert_error(format!("host {host:?}: {e}")))?,
            ),
        });
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let out = store_dir(dir);
    ca.issue(params, &out, TlsFiles::store_in_dir(&out), "the store")
}

/// A development CA, read from the directory [`init`] wrote.
struct Ca {
    cluster: ClusterId,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn open(dir: &Path) -> Result<Ca, TransportError> {
        if !dir.join(CA_CERT).is_file() || !dir.join(CA_KEY).is_file() {
            return Err(cert_error(format!(
                "{} holds no development CA ({CA_CERT} and {CA_KEY}): make one with init",
                dir.display()
            )));
        }
        let pem = read_text(&dir.join(CA_CERT))?;
        let key = KeyPair::from_pem(&read_text(&dir.join(CA_KEY))?).map_err(|e| {
            cert_error(format!(
                "{}: not a private key: {e}",
                dir.join(CA_KEY).display()
            ))
        })?;
        let cluster = cluster_of_ca(&pem)
            .map_err(|e| cert_error(format!("{}: {e}", dir.join(CA_CERT).display())))?;
        let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(cert_error)?;
        Ok(Ca {
            cluster,
            pem,
            issuer,
        })
    }

    /// Signs a new key's certificate with `params` and writes it, its key and the CA's
    /// certificate as `files` in the new directory `out` (`who` names it in errors).
    fn issue(
        &self,
        mut params: CertificateParams,
        out: &Path,
        files: TlsFiles,
        who: &str,
    ) -> Result<TlsFiles, TransportError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_error)?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(out)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => cert_error(format!(
                    "{} exists: {who} has certificates already",
                    out.display()
                )),
                _ => file_error("create directory", out, e),
            })?;
        write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&files.cert, cert.pem().as_bytes(), 0o644)?;
        write_new(&files.ca, self.pem.as_bytes(), 0o644)?;
        Ok(files)
    }
}

/// The cluster a development CA was made for (its URI `fencekit://<cluster>`).
fn cluster_of_ca(pem: &str) -> Result<ClusterId, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    tls::cluster_of_ca(&der)
}

fn uri(text: &str) -> Result<SanType, TransportError> {
    Ok(SanType::URI(text.try_into().map_err(cert_error)?))
}

fn read_text(path: &Path) -> Result<String, TransportError> {
    fs::read_to_string(path).map_err(|e| file_error("read", path, e))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TransportError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| file_error("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| file_error("write", path, e))
}
