//! Who is writing: on HTTPS, the node the client's certificate names, in the store's cluster;
//! on an `--insecure` store, whoever the `holder` parameter says (anyone can say anything).

use fencekit::transport::tcp::tls::Identity;
use fencekit::{ClusterId, NodeId};

use crate::http::{Reply, Request};

/// How the store knows its writers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Writers {
    /// Client certificates of this cluster's CA name them.
    Certified { cluster: ClusterId },
    /// The request says (`--insecure`).
    Declared,
}

impl Writers {
    /// Whether `request` may read the ledger: any node of the cluster (or anyone, insecure).
    pub(crate) fn reader(self, request: &Request) -> Result<(), Reply> {
        match self {
            Writers::Declared => Ok(()),
            Writers::Certified { cluster } => certified(request, cluster).map(|_| ()),
        }
    }

    /// The writer of `request`, or the answer that refuses it.
    pub(crate) fn writer(self, request: &Request) -> Result<NodeId, Reply> {
        let declared = match request.param("holder") {
            None => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .ok()
                    .and_then(|h| NodeId::new(h).ok())
                    .ok_or_else(|| {
                        Reply::error(400, format!("holder={text:?}: give a node id, 1 to 2^64-1"))
                    })?,
            ),
        };
        match self {
            Writers::Declared => {
                declared.ok_or_else(|| Reply::error(400, "holder: missing (a node id)"))
            }
            Writers::Certified { cluster } => {
                let peer = certified(request, cluster)?;
                match declared {
                    Some(holder) if holder != peer.node => Err(Reply::error(
                        403,
                        format!("your certificate names {peer}: it cannot write as node {holder}"),
                    )),
                    _ => Ok(peer.node),
                }
            }
        }
    }
}

/// The identity `request`'s certificate names, in `cluster`.
fn certified(request: &Request, cluster: ClusterId) -> Result<Identity, Reply> {
    let Some(peer) = request.peer else {
        return Err(Reply::error(
            401,
            "this store knows its writers by their certificates: connect with a node \
             certificate of the cluster's CA",
        ));
    };
    if peer.cluster != cluster {
        return Err(Reply::error(
            403,
            format!("your certificate names {peer}; this store serves cluster {cluster}"),
        ));
    }
    Ok(peer)
}
