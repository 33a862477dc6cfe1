//! `fencekit certs`: development certificates for a secure group: a CA, one certificate per
//! node, each naming `fencekit://<cluster>/<node>`, and the fenced store's (see
//! `fencekit::transport::tcp::dev_certs`).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use fencekit::transport::tcp::dev_certs;
use fencekit::{ClusterId, NodeId};

/// Makes certificates for a group's nodes.
#[derive(Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// Make a new CA for a cluster, and a certificate for each node.
    Init(InitArgs),
    /// Make a certificate for one more node with an existing CA.
    Add(AddArgs),
}

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Where to write the CA (ca.crt, ca.key) and each node's directory (node-<id>/); created
    /// if missing, refused if it holds a CA already.
    #[arg(long)]
    dir: PathBuf,
    /// The group's id (the nodes' --cluster).
    #[arg(long, default_value_t = 1)]
    cluster: u64,
    /// The node ids, comma-separated: 1,2,3.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<u64>,
    /// The host names and IP addresses clients reach the fenced store by, comma-separated:
    /// its certificate (in DIR/store/) names them, and clients check it does.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    store_hosts: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["node", "store_hosts"])))]
pub(crate) struct AddArgs {
    /// The directory `certs init` wrote (it holds ca.crt and ca.key).
    #[arg(long)]
    dir: PathBuf,
    /// The new node's id.
    #[arg(long)]
    node: Option<u64>,
    /// Instead of a node: the fenced store's certificate (in DIR/store/), naming these host
    /// names and IP addresses, comma-separated.
    #[arg(long, value_delimiter = ',')]
    store_hosts: Option<Vec<String>>,
}

fn node_id(id: u64) -> Result<NodeId> {
    NodeId::new(id).map_err(|_| anyhow!("node id {id}: must be 1 to 2^64-1"))
}

pub(crate) fn run(command: &CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Init(args) => {
            let ids = args
                .nodes
                .iter()
                .map(|&id| node_id(id))
                .collect::<Result<Vec<_>>>()?;
            dev_certs::init(&args.dir, ClusterId::new(args.cluster), &ids)?;
            dev_certs::add_store(&args.dir, &args.store_hosts)?;
            println!(
                "a development CA for cluster {} is in {} (keep ca.key private: it makes members)",
                args.cluster,
                args.dir.display()
            );
            for id in ids {
                print_node(&args.dir, id);
            }
            print_store(&args.dir);
        }
        CertsCommand::Add(args) => match (args.node, &args.store_hosts) {
            (Some(node), _) => {
                let id = node_id(node)?;
                dev_certs::add(&args.dir, id)?;
                print_node(&args.dir, id);
            }
            (None, Some(hosts)) => {
                dev_certs::add_store(&args.dir, hosts)?;
                print_store(&args.dir);
            }
            // clap requires one of the two.
            (None, None) => bail!("give --node ID or --store-hosts HOSTS"),
        },
    }
    Ok(())
}

fn print_node(dir: &std::path::Path, id: NodeId) {
    println!(
        "node {id}: fencekit node --id {id} --tls-dir {} ...",
        dev_certs::node_dir(dir, id).display()
    );
}

fn print_store(dir: &std::path::Path) {
    println!(
        "the store: fencekit store --tls-dir {} ...",
        dev_certs::store_dir(dir).display()
    );
}
