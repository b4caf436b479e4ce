//! A package file that rots on disk right after the download that stored
//! it is never served whole (issue 19, item 7). The clients of a download
//! read its bytes back from the file the download writes, which becomes
//! the cached file at commit: those reads are checked against the checksum
//! of what the upstream sent, the last bytes are withheld on a mismatch,
//! and the rotten entry is dropped, so the next request fetches good bytes.

mod common;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::upstream::FakeUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MIB: usize = 1024 * 1024;
/// Far more than the socket buffers between nucache and a client that
/// reads nothing (4 MiB here): most of it is still unread at the commit.
const SIZE: usize = 16 * MIB;
/// Where the file rots: past anything a stalled client can have been sent.
const ROT_AT: u64 = 12 * MIB as u64;

const KEY: &str = "flatcontainer/rot.big/1.0.0/rot.big.1.0.0.nupkg";

fn package_bytes() -> Vec<u8> {
    (0..SIZE as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The committed content file of `KEY`, once there (files are named by a
/// hash of the key).
async fn committed_file(nucache: &Nucache) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(file) = common::content_file(&nucache.dir, &nucache.upstream, KEY) {
            return file;
        }
        assert!(Instant::now() < deadline, "the download was never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A GET whose client reads the head and then nothing, with a small
/// receive buffer, so that nucache must wait before it reads on.
async fn stalled_get(nucache: &Nucache) -> (TcpStream, Vec<u8>) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let mut stream = socket.connect(nucache.addr).await.expect("connect");
    let request = format!(
        "GET /v3/{KEY} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        nucache.addr
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.expect("read the head");
        assert!(n > 0, "closed before the head");
        received.extend_from_slice(&buffer[..n]);
    }
    (stream, received)
}

/// Reads the rest of the response (until nucache closes the connection,
/// at the end or breaking off): the body bytes.
async fn rest_of_body(mut stream: TcpStream, mut received: Vec<u8>) -> Vec<u8> {
    let read_all = async {
        let _ = stream.read_to_end(&mut received).await;
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the body ends");
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-cache: miss"), "the client of the download: {head}");
    assert!(head.contains(&format!("content-length: {SIZE}")), "{head}");
    received.split_off(head_end)
}

#[tokio::test]
async fn a_package_that_rots_right_after_its_download_is_never_served_whole() {
    let upstream = FakeUpstream::start().await;
    let good = package_bytes();
    upstream.add_package("Rot.Big", "1.0.0", good.clone());
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;

    let (stream, head) = stalled_get(&nucache).await;
    // The upstream's bytes all reach the disk whatever the client reads;
    // the download is checked and committed, then its file rots.
    let file = committed_file(&nucache).await;
    let rot = std::fs::OpenOptions::new().write(true).open(&file).expect("open");
    rot.write_all_at(&[0x5a; 64], ROT_AT).expect("rot");
    drop(rot);

    let body = rest_of_body(stream, head).await;
    assert!(
        body.len() < SIZE,
        "the rotten file went out whole ({} bytes; equal to the upstream's: {})",
        body.len(),
        body == good
    );

    let next = nucache.get(&format!("/v3/{KEY}")).await;
    assert_eq!(next.x_cache(), Some("MISS"), "the rotten entry was dropped at once");
    assert!(next.body_error.is_none());
    assert!(next.body == good, "good bytes from the upstream");
    assert_eq!(upstream.count("rot.big.1.0.0.nupkg"), 2);
}
