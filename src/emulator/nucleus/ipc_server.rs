//! The emulated nucleus's IPC server: a Unix socket that many components connect to.
//!
//! Owns: accepting connections and moving frames between each socket and its [`Session`].
//! Must not know: protocol rules or operations (those are the session's and the services').

use super::ipc_services::Services;
use super::ipc_session::{protocol_error, Next, Session};
use crate::ipc::codec::{FrameCodec, FrameError};
use crate::ipc::rpc::RpcMessage;
use futures_util::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// A running IPC server; dropping it stops accepting and removes the socket file.
pub struct IpcServer {
    path: PathBuf,
    accept: JoinHandle<()>,
    /// Turns true when the server stops: every connection closes, as when the nucleus exits.
    stop: watch::Sender<bool>,
}

impl IpcServer {
    /// Listens on `path` (replacing a stale socket file) and serves until dropped.
    pub fn bind(path: &Path, services: Arc<Services>) -> std::io::Result<Self> {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, services, stopped));
        Ok(Self {
            path: path.to_owned(),
            accept,
            stop,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for IpcServer {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = self.stop.send(true);
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop(
    listener: UnixListener,
    services: Arc<Services>,
    stopped: watch::Receiver<bool>,
) {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_connection(
                    id,
                    socket,
                    Arc::clone(&services),
                    stopped.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "IPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    id: u64,
    socket: UnixStream,
    services: Arc<Services>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut framed = Framed::new(socket, FrameCodec::default());
    let (events_tx, mut events) = mpsc::unbounded_channel::<RpcMessage>();
    let mut session = Session::new(id, events_tx);
    let mut out = Vec::new();
    let reason = loop {
        tokio::select! {
            _ = stopped.changed() => break "server stopped".to_owned(),
            frame = framed.next() => {
                let message = match frame {
                    None => break "client closed the connection".to_owned(),
                    // A bad checksum closes the socket silently, as the nucleus does.
                    Some(Err(e @ (FrameError::PreludeChecksum { .. } | FrameError::MessageChecksum { .. }))) => {
                        break format!("{e}");
                    }
                    Some(Err(e)) => {
                        let _ = framed.send(protocol_error(&e.to_string()).into_frame()).await;
                        break format!("{e}");
                    }
                    Some(Ok(frame)) => match RpcMessage::from_frame(&frame) {
                        Ok(message) => message,
                        Err(e) => {
                            let _ = framed.send(protocol_error(&e.to_string()).into_frame()).await;
                            break format!("{e}");
                        }
                    },
                };
                let next = session.on_message(&services, message, &mut out);
                if let Err(e) = send_all(&mut framed, &mut out).await {
                    break format!("write failed: {e}");
                }
                if next == Next::Close {
                    break "protocol rule violated".to_owned();
                }
            }
            Some(event) = events.recv() => {
                out.push(event);
                while let Ok(event) = events.try_recv() {
                    out.push(event);
                }
                if let Err(e) = send_all(&mut framed, &mut out).await {
                    break format!("write failed: {e}");
                }
            }
        }
    };
    tracing::debug!(connection = id, component = session.component(), %reason, "IPC connection ended");
}

async fn send_all(
    framed: &mut Framed<UnixStream, FrameCodec>,
    out: &mut Vec<RpcMessage>,
) -> Result<(), FrameError> {
    if out.is_empty() {
        return Ok(());
    }
    for message in out.drain(..) {
        framed.feed(message.into_frame()).await?;
    }
    framed.flush().await
}
