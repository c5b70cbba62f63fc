//! The balancer's errors: operating errors as values with clear messages.

use std::net::SocketAddr;

/// What can go wrong starting or running the balancer.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data plane's threads could not start.
    #[error("cannot start the data plane runtime: {0}")]
    Runtime(std::io::Error),
    /// The balancer process could not be spawned on the node.
    #[error("cannot start the balancer process: {0}")]
    Node(#[from] plateau_runtime::node::NodeError),
    /// A configuration value is unusable.
    #[error("invalid balancer configuration: {0}")]
    Config(String),
}
