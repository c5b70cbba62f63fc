//! The admin listener's limits: idle connections cannot starve it, and they are closed after
//! the idle timeout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use plateau_balancer::dataplane::{DataPlane, DataPlaneConfig};
use plateau_balancer::limits::ADMIN_CONNECTIONS_MAX;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

fn data_plane(admin_idle_timeout: Duration) -> DataPlane {
    DataPlane::start(DataPlaneConfig {
        http_addr: None,
        admin_idle_timeout,
        ..DataPlaneConfig::loopback()
    })
    .unwrap()
}

/// `GET path` on a connection of its own: the status line.
async fn get(admin: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(admin).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    Ok(answer.lines().next().unwrap_or_default().to_string())
}

/// Whether the server closed `s` (EOF or reset) within the deadline (what it still had to
/// say is read and dropped).
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let drained = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, drained).await.is_ok()
}

#[tokio::test]
async fn idle_connections_beyond_the_limit_do_not_starve_the_admin_port() -> Result<()> {
    // An idle timeout longer than the test's deadline: only making room can let the request in.
    let dp = data_plane(Duration::from_secs(600));
    let admin = dp.admin_addr().context("admin address")?;
    let mut idle = Vec::new();
    for _ in 0..ADMIN_CONNECTIONS_MAX + 16 {
        idle.push(TcpStream::connect(admin).await?);
    }
    let status = tokio::time::timeout(DEADLINE, get(admin, "/_health"))
        .await
        .context("the admin port did not answer behind idle connections")??;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The oldest idle connections were closed to make room.
    assert!(closed_by_server(&mut idle[0]).await);
    dp.shutdown();
    Ok(())
}

#[tokio::test]
async fn idle_admin_connections_are_closed_after_the_idle_timeout() -> Result<()> {
    let dp = data_plane(Duration::from_millis(300));
    let admin = dp.admin_addr().context("admin address")?;
    // One that never sends a byte, one that sends half a request head, one after a request.
    let mut silent = TcpStream::connect(admin).await?;
    let mut partial = TcpStream::connect(admin).await?;
    partial.write_all(b"GET /stats HTTP/1.1\r\nHost: a").await?;
    let mut served = TcpStream::connect(admin).await?;
    served
        .write_all(b"GET /_health HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await?;
    let mut head = [0u8; 15];
    served.read_exact(&mut head).await?;
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    for (what, s) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("served", &mut served),
    ] {
        assert!(
            closed_by_server(s).await,
            "the {what} connection was not closed"
        );
    }
    assert_eq!(get(admin, "/_health").await?, "HTTP/1.1 200 OK");
    dp.shutdown();
    Ok(())
}
