//! Pieces for `bench/balancer.sh`: a trivial HTTP backend, and the balancer's data plane
//! routing one virtual host (`bench.local`) and one service port to it.
//!
//! ```text
//! bench_balancer backend <port>
//! bench_balancer balancer <http-port> <backend-port> <service-port>
//! ```
//! Both run until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use plateau_balancer::dataplane::{DataPlane, DataPlaneConfig};
use plateau_balancer::messages::{AppRoutes, Backend, BackendState, RoutesSnapshot};
use plateau_balancer::table::RoutingState;

fn port(arg: Option<String>, what: &str) -> u16 {
    arg.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("missing or bad {what}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("backend") => backend(port(args.next(), "port")),
        Some("balancer") => {
            let http = port(args.next(), "http port");
            let backend = port(args.next(), "backend port");
            let service = port(args.next(), "service port");
            balancer(http, backend, service)
        }
        _ => {
            eprintln!("usage: bench_balancer backend <port> | balancer <http-port> <backend-port> <service-port>");
            std::process::exit(2);
        }
    }
}

fn backend(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("bind backend");
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
}

fn balancer(http: u16, backend: u16, service: u16) {
    let dp = DataPlane::start(DataPlaneConfig {
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], http))),
        ..DataPlaneConfig::loopback()
    })
    .expect("start data plane");
    let mut state = RoutingState::new(None);
    state.handle_snapshot(RoutesSnapshot {
        version: 1,
        apps: vec![AppRoutes {
            app_id: "/bench".into(),
            service_ports: vec![service],
            labels: [("HAPROXY_0_VHOST".to_string(), "bench.local".to_string())].into(),
            has_health_checks: false,
            backends: vec![Backend {
                task_id: "bench.1".into(),
                host: "127.0.0.1".into(),
                ports: vec![backend],
                state: BackendState::Running,
                healthy: None,
            }],
        }],
    });
    dp.publish(Arc::new(state.table()));
    eprintln!(
        "balancer: http {:?}, admin {:?}, service port {service}",
        dp.http_addr(),
        dp.admin_addr()
    );
    loop {
        std::thread::park();
    }
}
