//! A TCP proxy a test controls, to put a dependency (Redis, Postgres) out of reach without
//! touching the shared server: forward, then either [`stall`](TcpProxy::stall) (connections
//! stay open, nothing more is forwarded: packets held, as behind a dead link) or
//! [`cut`](TcpProxy::cut) (every connection closed, new ones refused: as a stopped server).

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Stall,
    Cut,
}

/// A loopback TCP proxy to `target`; stops (closing everything) when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listen on a free loopback port and forward every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, watched) = watch::channel(Mode::Forward);
        let task = tokio::spawn(accept_loop(listener, target, watched));
        Ok(TcpProxy { addr, mode, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop forwarding in both directions; connections (old and new) stay open, unanswered.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Close every connection and refuse new ones (the listening socket is closed).
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// `url` (e.g. `redis://127.0.0.1:6379/0` or `postgres://u@127.0.0.1:5432/db`) with its
    /// host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let start = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[start..];
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let userinfo = authority.rfind('@').map_or("", |i| &authority[..=i]);
        format!("{}{userinfo}{}{}", &url[..start], self.addr, &rest[end..])
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = mode.wait_for(|m| *m == Mode::Cut) => return,
        };
        let Ok((client, _)) = accepted else { continue };
        let mode = mode.clone();
        tokio::spawn(async move {
            if *mode.borrow() != Mode::Forward {
                // Accepted, never answered (or closed at once when cut).
                hold(mode, vec![client]).await;
                return;
            }
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw, mode.clone()), pump(sr, cw, mode));
        });
    }
}

/// Keep `sockets` open until the proxy is cut.
async fn hold<T>(mut mode: watch::Receiver<Mode>, sockets: Vec<T>) {
    let _ = mode.wait_for(|m| *m == Mode::Cut).await;
    drop(sockets);
}

/// Copy `from` into `to` while forwarding; once stalled, hold both until cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            r = from.read(&mut buf) => r,
            _ = mode.wait_for(|m| *m != Mode::Forward) => break,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    hold(mode, vec![(from, to)]).await;
}
