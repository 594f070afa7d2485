//! A small raw HTTP/1.1 client (raw, so tests can send paths and bodies no
//! normal client would): a request written by hand, a response read exactly
//! to its end so a connection can be reused.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Socket read timeout for the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

pub trait Stream: Read + Write {
    fn shutdown_write(&self);
}

impl Stream for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Stream for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

pub fn connect(addr: &Addr) -> Box<dyn Stream> {
    match addr {
        Addr::Tcp(a) => {
            let s = TcpStream::connect(a).expect("connect");
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            Box::new(s)
        }
        Addr::Unix(p) => {
            let s = UnixStream::connect(p).expect("connect unix");
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            Box::new(s)
        }
    }
}

/// A request written by hand; `Connection: close` unless told otherwise.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
    pub keep_alive: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            keep_alive: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sends the body with `Transfer-Encoding: chunked` (no Content-Length).
    pub fn chunked(mut self) -> Request {
        self.chunked = true;
        self
    }

    /// Adds HTTP Basic credentials.
    pub fn basic(self, user: &str, password: &str) -> Request {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", &format!("Basic {encoded}"))
    }

    pub fn keep_alive(mut self) -> Request {
        self.keep_alive = true;
        self
    }

    pub fn head_bytes(&self) -> Vec<u8> {
        self.head_for(self.body.len())
    }

    /// The head for a body of `len` bytes (Content-Length unless chunked).
    fn head_for(&self, len: usize) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: test\r\n", self.method, self.path);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if self.chunked {
            out.push_str("Transfer-Encoding: chunked\r\n");
        } else if len != 0 || self.method == "POST" {
            out.push_str(&format!("Content-Length: {len}\r\n"));
        }
        if !self.keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Writes the head, then `body` in place of the request's own, from
    /// where it lies: the benchmark's 64 MiB blobs are not copied into a
    /// request first (the copy would count in its figures).
    pub fn write_with_body(&self, stream: &mut dyn Write, body: &[u8]) -> std::io::Result<()> {
        assert!(!self.chunked, "write_with_body sends a Content-Length body");
        stream.write_all(&self.head_for(body.len()))?;
        stream.write_all(body)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        if self.chunked {
            for chunk in self.body.chunks(4096) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response. Bodies are delimited by Content-Length or chunked
/// encoding, so the connection can be reused afterwards.
pub fn read_response(stream: &mut dyn Read, head_only: bool) -> Response {
    let mut reader = ByteReader { inner: stream };
    let status_line = reader.line().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let line = reader.line().expect("header line");
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').expect("header");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return response;
    }
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = reader.line().expect("chunk size");
            let size = usize::from_str_radix(size_line.trim(), 16).expect("chunk size");
            if size == 0 {
                let _ = reader.line();
                break;
            }
            let mut chunk = vec![0; size];
            reader.inner.read_exact(&mut chunk).expect("chunk");
            response.body.extend_from_slice(&chunk);
            let _ = reader.line();
        }
    } else if let Some(len) = response.header("content-length") {
        let mut body = vec![0; len.parse().expect("content-length")];
        reader.inner.read_exact(&mut body).expect("body");
        response.body = body;
    }
    response
}

/// One `read`, again if a signal interrupted it before anything was read
/// (EINTR: SIGCHLD from another test's child process; seen under qemu-user).
pub fn read_once(stream: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

struct ByteReader<'a> {
    inner: &'a mut dyn Read,
}

impl ByteReader<'_> {
    /// One CRLF-terminated line, read byte by byte so nothing past it is consumed.
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match read_once(self.inner, &mut byte) {
                Ok(0) => {
                    return if line.is_empty() {
                        None
                    } else {
                        Some(lossy(&line))
                    };
                }
                Ok(_) => {}
                Err(e) => panic!("read: {e}"),
            }
            if byte[0] == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(lossy(&line));
            }
            line.push(byte[0]);
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `request` with `body` in place of its own, on a TCP connection of its own
/// with Nagle's delay off (as restic's Go client has it), the answer read
/// through a buffer: the benchmark's request, where the client's own cost
/// must stay out of the figures.
pub fn exchange(addr: SocketAddr, request: &Request, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    request.write_with_body(&mut stream, body).unwrap();
    read_response(&mut BufReader::new(stream), request.method == "HEAD")
}
