//! `gateway health`: asks the local admin listener for `/status/ready`.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Status code and body of `GET /status/ready`.
pub async fn check(
    addr: SocketAddr,
    ssl: bool,
    proxy_protocol: bool,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    if proxy_protocol {
        // A LOCAL-equivalent header: the node uses the socket address.
        stream.write_all(b"PROXY UNKNOWN\r\n").await?;
    }
    if ssl {
        let connector = tokio_rustls::TlsConnector::from(crate::tls::no_verify_client_config());
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = connector.connect(name, stream).await?;
        get(tls, addr).await
    } else {
        get(stream, addr).await
    }
}

async fn get<IO>(io: IO, addr: SocketAddr) -> anyhow::Result<(u16, String)>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/status/ready")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}
