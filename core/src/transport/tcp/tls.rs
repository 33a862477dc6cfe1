//! Mutual TLS between the members of a group (DESIGN.md I8: only members speak).
//!
//! Every node holds a certificate signed by a CA the group trusts. The certificate names the
//! node's identity as a URI subject alternative name, `fencekit://<cluster>/<node>` (both
//! decimal). Both ends verify the other's chain against the CA (TLS 1.3, rustls on ring); then
//! the transport checks that the identity the peer claims in its handshake is the one its
//! certificate carries, in this cluster. A certificate the CA did not sign, a certificate of
//! another cluster, or a node-2 certificate claiming to be node 3 is refused.
//!
//! The files are watched: replaced certificates (a renewal, a new CA) are picked up without a
//! restart, by new connections; a half-written replacement that does not load is reported and
//! the previous files stay in use. A private key that its group or others may read, and a
//! certificate or CA file that they may write, are refused.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::cluster::ClusterId;
use crate::error::TransportError;
use crate::limits::TLS_FILE_MAX;
use crate::token::NodeId;

/// Where a node's certificate, private key and CA certificate are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate (PEM; the chain up to, not including, the CA).
    pub cert: PathBuf,
    /// The node's private key (PEM: PKCS#8, SEC1 or PKCS#1); readable by its owner only.
    pub key: PathBuf,
    /// The CA certificate(s) the group trusts (PEM).
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The files as `fencekit certs` lays them out in a node's directory: `node.crt`,
    /// `node.key` and `ca.crt`.
    pub fn in_dir(dir: impl AsRef<Path>) -> TlsFiles {
        let dir = dir.as_ref();
        TlsFiles {
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
            ca: dir.join("ca.crt"),
        }
    }
}

/// Who a certificate says its holder is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The cluster id.
    pub cluster: ClusterId,
    /// The node.
    pub node: NodeId,
}

/// The URI scheme of identities.
const SCHEME: &str = "fencekit://";

impl Identity {
    /// The identity as a URI: `fencekit://<cluster>/<node>`.
    pub fn uri(&self) -> String {
        format!("{SCHEME}{}/{}", self.cluster, self.node)
    }

    /// Parses `fencekit://<cluster>/<node>`; anything else is `None`.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let (cluster, node) = uri.strip_prefix(SCHEME)?.split_once('/')?;
        // Canonical decimal only: one identity has one spelling ("02" is not node 2).
        let number = |s: &str| s.parse::<u64>().ok().filter(|n| n.to_string() == s);
        Some(Identity {
            cluster: ClusterId::new(number(cluster)?),
            node: NodeId::new(number(node)?).ok()?,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} of cluster {}", self.node, self.cluster)
    }
}

/// The URIs among a certificate's subject alternative names.
pub fn uris(cert: &[u8]) -> Result<Vec<String>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("its subject alternative names do not parse: {e}"))?;
    let Some(san) = san else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_string()),
            _ => None,
        })
        .collect())
}

/// The one fencekit identity a certificate carries. A certificate with none, or with more than
/// one, identifies nobody.
pub fn identity_of(cert: &[u8]) -> Result<Identity, String> {
    let all = uris(cert)?;
    let ids: Vec<Identity> = all.iter().filter_map(|u| Identity::from_uri(u)).collect();
    match ids[..] {
        [one] => Ok(one),
        [] => Err(format!(
            "it names no fencekit identity (a URI fencekit://<cluster>/<node>); its URIs: {all:?}"
        )),
        _ => Err(format!("it names {} fencekit identities", ids.len())),
    }
}

/// The client and server configurations built from one reading of the files.
#[derive(Debug)]
pub(crate) struct TlsContext {
    pub(crate) client: Arc<ClientConfig>,
    pub(crate) server: Arc<ServerConfig>,
}

/// A certificate chain, its private key and the CA, read with this module's checks of
/// ownership, modes and sizes: for TLS outside the Raft transport (the store's HTTPS and
/// its clients).
pub struct TlsMaterial {
    /// The holder's certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The holder's private key.
    pub key: PrivateKeyDer<'static>,
    /// The same key as the file holds it (PEM), for TLS stacks that parse it themselves.
    pub key_pem: Vec<u8>,
    /// The CA certificate(s) trusted.
    pub ca: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TlsMaterial")
            .field("chain", &self.chain.len())
            .field("ca", &self.ca.len())
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// The files as `fencekit certs` lays out the store's directory: `store.crt`,
    /// `store.key` and `ca.crt`.
    pub fn store_in_dir(dir: impl AsRef<Path>) -> TlsFiles {
        let dir = dir.as_ref();
        TlsFiles {
            cert: dir.join("store.crt"),
            key: dir.join("store.key"),
            ca: dir.join("ca.crt"),
        }
    }

    /// Reads the three files, refusing a key others may read, a certificate or CA file
    /// others may write, and anything that is not PEM.
    pub fn read(&self) -> Result<TlsMaterial, TransportError> {
        let chain = read_certs(&self.cert, "certificate")?;
        let ca = read_certs(&self.ca, "CA certificate")?;
        let key_pem = read_private(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| tls_error(&self.key, format!("not a PEM private key: {e}")))?;
        Ok(TlsMaterial {
            chain,
            key,
            key_pem,
            ca,
        })
    }
}

/// The cluster a fencekit CA certificate was made for: its URI `fencekit://<cluster>`.
pub fn cluster_of_ca(cert: &[u8]) -> Result<ClusterId, String> {
    uris(cert)?
        .iter()
        .find_map(|u| u.strip_prefix(SCHEME).and_then(|c| c.parse().ok()))
        .map(ClusterId::new)
        .ok_or_else(|| "not a fencekit CA (no fencekit://<cluster> URI)".into())
}

/// The URI naming the fenced store of `cluster` in its certificate: `fencekit://<cluster>/store`.
/// It is no node's identity, so the store's certificate cannot join the Raft group.
pub fn store_uri(cluster: ClusterId) -> String {
    format!("{SCHEME}{cluster}/store")
}

impl TlsContext {
    /// Loads the files for `me`: refuses a key others may read, a certificate that does not
    /// name `me`, or one the CA did not sign.
    fn load(files: &TlsFiles, me: Identity) -> Result<TlsContext, TransportError> {
        let TlsMaterial { chain, key, ca, .. } = files.read()?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|e| tls_error(&files.ca, format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let named = identity_of(&chain[0]).map_err(|e| tls_error(&files.cert, e))?;
        if named != me {
            return Err(tls_error(
                &files.cert,
                format!("it names {named}, but this is {me}"),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = GroupCaVerifier {
            roots: roots.clone(),
            algorithms: provider.signature_verification_algorithms,
        };
        let clients = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            // The CA's name is not told to whoever opens a connection.
            .clear_root_hint_subjects()
            .build()
            .map_err(|e| tls_error(&files.ca, e))?;
        // The node's certificate serves both ends of a connection. One that peers would
        // refuse (another CA, expired, not for server or for client use) is refused now.
        let unusable = |e: rustls::Error| {
            tls_error(
                &files.cert,
                format!("its peers would refuse it ({e}; CA {})", files.ca.display()),
            )
        };
        verifier
            .verify_chain(&chain[0], &chain[1..])
            .map_err(unusable)?;
        clients
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(unusable)?;
        let server = server_config(&provider, clients, chain.clone(), key.clone_key())
            .map_err(|e| tls_error(&files.cert, e))?;
        let client =
            client_config(&provider, verifier, chain, key).map_err(|e| tls_error(&files.key, e))?;
        Ok(TlsContext {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

fn tls_error(path: &Path, reason: impl fmt::Display) -> TransportError {
    TransportError::Tls(format!("{}: {reason}", path.display()))
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    clients: Arc<dyn ClientCertVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    // Nothing but the handshake answer ever flows from the accepting side, so the connecting
    // side can take any byte it reads as the connection's end (see `tcp::peer_gone`).
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: GroupCaVerifier,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    config.enable_sni = false;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Verifies a server's chain against the group's CA. The name check of web TLS (DNS names) is
/// replaced by the transport's identity check after the handshake: the connecting side knows
/// which node it dialled and refuses a certificate that names another.
#[derive(Debug)]
struct GroupCaVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl GroupCaVerifier {
    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            UnixTime::now(),
            self.algorithms.all,
        )
    }
}

impl ServerCertVerifier for GroupCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_chain(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Reads a file of at most `TLS_FILE_MAX` bytes, refusing one that its group or others may
/// write (they could swap in a certificate or a CA of their own).
fn read_public(path: &Path) -> Result<Vec<u8>, TransportError> {
    read_checked(path, 0o022, "writable by its group or others")
}

/// Reads a secret (a private key, an access token) of at most `TLS_FILE_MAX` bytes, refusing
/// a file that its group or others may read or write, one owned by another user, or one on a
/// path others could swap.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    read_private(path).map_err(|e| match e {
        TransportError::Tls(reason) => reason,
        other => other.to_string(),
    })
}

/// Refuses a path to be made (a Unix socket to bind) whose directory, or one on the way to it,
/// others than this process's user and root may write: they could swap what the path names
/// for something of theirs. The check [`read_secret_file`] makes for a file that exists.
pub fn check_private_path(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    // A symbolic link on the way that another user owns can be pointed elsewhere by them,
    // even inside a sticky directory: refuse it (the directories it leads to are checked
    // below, as resolved).
    let named = std::path::absolute(dir).map_err(|e| e.to_string())?;
    for step in named.ancestors() {
        if let Ok(meta) = std::fs::symlink_metadata(step)
            && meta.file_type().is_symlink()
            && meta.uid() != me
            && meta.uid() != 0
        {
            return Err(format!(
                "{}: the symbolic link {} on its way belongs to uid {}, who can point it \
                 elsewhere",
                path.display(),
                step.display(),
                meta.uid()
            ));
        }
    }
    check_directories(dir, me, 0).map_err(|e| match e {
        TransportError::Tls(reason) => reason,
        other => other.to_string(),
    })
}

/// Reads a private key, refusing one that its group or others may read or write.
fn read_private(path: &Path) -> Result<Vec<u8>, TransportError> {
    read_checked(path, 0o077, "readable by its group or others")
}

fn read_checked(path: &Path, forbidden: u32, what: &str) -> Result<Vec<u8>, TransportError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so that a FIFO put in a file's place cannot hang the open (it is refused
    // below, as anything but a regular file is); a regular file ignores the flag.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| tls_error(path, format!("cannot open: {e}")))?;
    // The mode of the file opened, not of whatever the path names a moment later.
    let meta = file
        .metadata()
        .map_err(|e| tls_error(path, format!("cannot stat: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(tls_error(
            path,
            "not a regular file (a FIFO, device or directory)",
        ));
    }
    // Whoever owns a file can rewrite it, and whoever may write a directory on the way to it
    // can swap it (ssh's StrictModes makes the same checks).
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(tls_error(
            path,
            format!(
                "it is owned by uid {}, not by this process (uid {me}) or root",
                meta.uid()
            ),
        ));
    }
    check_directories(path, me, 1)?;
    let mode = meta.mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(tls_error(
            path,
            format!(
                "mode {mode:03o} is {what}: run `chmod {:03o} {}`",
                mode & !forbidden,
                path.display()
            ),
        ));
    }
    if meta.len() > TLS_FILE_MAX {
        return Err(tls_error(
            path,
            format!("{} bytes is more than {TLS_FILE_MAX}", meta.len()),
        ));
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(TLS_FILE_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| tls_error(path, format!("cannot read: {e}")))?;
    Ok(bytes)
}

/// Every directory on the way to `path`, as named and as resolved through symbolic links,
/// is owned by this process's user or root, and writable by no one else (unless sticky, as
/// `/tmp`: there others cannot rename or remove what is not theirs).
/// Refuses `path` when a directory on its way (from `skip` levels up: 1 for a file, 0 for a
/// directory itself), as named or as resolved, may be written by others than `me` and root.
fn check_directories(path: &Path, me: u32, skip: usize) -> Result<(), TransportError> {
    let named = std::path::absolute(path).map_err(|e| tls_error(path, e))?;
    let resolved = std::fs::canonicalize(path).map_err(|e| tls_error(path, e))?;
    for way in [named, resolved] {
        for dir in way.ancestors().skip(skip) {
            let meta = std::fs::metadata(dir)
                .map_err(|e| tls_error(path, format!("{}: {e}", dir.display())))?;
            let mode = meta.mode();
            let shared = mode & 0o022 != 0 && mode & 0o1000 == 0;
            let foreign = meta.uid() != me && meta.uid() != 0;
            if shared || foreign {
                return Err(tls_error(
                    path,
                    format!(
                        "the directory {} on its way (mode {:03o}, uid {}) can be written by \
                         others than this process's user and root: the file could be swapped",
                        dir.display(),
                        mode & 0o777,
                        meta.uid()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = read_public(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format!("not a PEM {what}: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(path, format!("holds no {what}")));
    }
    Ok(certs)
}

/// What identifies a version of the files: a replacement, a rewrite or a change of mode (the
/// change time) moves at least one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(Vec<Option<FileStamp>>);

/// One file's inode, length, modification time and change time (seconds, nanoseconds).
type FileStamp = (u64, u64, i64, i64, i64, i64);

impl Stamp {
    fn of(files: &TlsFiles) -> Stamp {
        Stamp(
            [&files.cert, &files.key, &files.ca]
                .iter()
                .map(|p| {
                    std::fs::metadata(p).ok().map(|m| {
                        (
                            m.ino(),
                            m.len(),
                            m.mtime(),
                            m.mtime_nsec(),
                            m.ctime(),
                            m.ctime_nsec(),
                        )
                    })
                })
                .collect(),
        )
    }
}

/// The TLS state of a running transport: the configuration in use, and the files it came
/// from, reloaded when they change.
#[derive(Debug)]
pub(crate) struct TlsState {
    files: TlsFiles,
    me: Identity,
    current: RwLock<Arc<TlsContext>>,
    /// The files as last loaded, or as last found unloadable (so a bad replacement is
    /// reported once, not every second).
    seen: Mutex<Stamp>,
}

impl TlsState {
    /// Loads the files for `me`.
    pub(crate) fn load(files: TlsFiles, me: Identity) -> Result<TlsState, TransportError> {
        let seen = Stamp::of(&files);
        let context = TlsContext::load(&files, me)?;
        Ok(TlsState {
            files,
            me,
            current: RwLock::new(Arc::new(context)),
            seen: Mutex::new(seen),
        })
    }

    /// The configuration for new connections.
    pub(crate) fn current(&self) -> Arc<TlsContext> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This node's identity.
    pub(crate) fn me(&self) -> Identity {
        self.me
    }

    /// Reloads the files now. On an error, the configuration in use stays.
    pub(crate) fn reload(&self) -> Result<(), TransportError> {
        let stamp = Stamp::of(&self.files);
        let loaded = TlsContext::load(&self.files, self.me);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        let context = loaded?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(context);
        Ok(())
    }

    /// Reloads the files if they changed since they were last looked at: `None` if they did
    /// not, else the outcome.
    pub(crate) fn reload_if_changed(&self) -> Option<Result<(), TransportError>> {
        let stamp = Stamp::of(&self.files);
        if *self.seen.lock().unwrap_or_else(|p| p.into_inner()) == stamp {
            return None;
        }
        Some(self.reload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_nothing_else_parses() {
        let id = Identity {
            cluster: ClusterId::new(7),
            node: NodeId::new(3).unwrap(),
        };
        assert_eq!(id.uri(), "fencekit://7/3");
        assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        for bad in [
            "fencekit://7/0",
            "fencekit://7/",
            "fencekit:///3",
            "fencekit://7/3/",
            "fencekit://+7/3",
            "fencekit://7/-3",
            "fencekit://18446744073709551616/3",
            "fencekit://7/18446744073709551616",
            "https://7/3",
            "fencekit://7",
            "fencekit://7/03",
            "fencekit://07/3",
        ] {
            assert_eq!(Identity::from_uri(bad), None, "{bad}");
        }
    }
}
