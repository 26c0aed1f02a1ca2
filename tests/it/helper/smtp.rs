//! A real SMTP server on loopback that keeps what it receives: EHLO, MAIL,
//! RCPT, DATA, QUIT — a real conversation over TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as received.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Received {
    /// A header's value (the first one, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut()
                && (line.starts_with(' ') || line.starts_with('\t'))
            {
                // Unfolding takes the line break out, not the space.
                v.push_str(line);
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }
}

/// The server and its mailbox. A recipient at `nobody@` is refused with a
/// permanent `550`, as a real server refuses an unknown user.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Every `RCPT TO:` asked, accepted or not.
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let mailbox = Arc::clone(&received);
        let recipients = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let mailbox = Arc::clone(&mailbox);
                let recipients = Arc::clone(&recipients);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
                    let mut message = Received::default();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250-sink.test\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            message.from = line[10..].trim().to_string();
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            let to = line[8..].trim().to_string();
                            recipients.lock().unwrap().push(to.clone());
                            if to.contains("nobody@") {
                                b"550 5.1.1 no such user\r\n"
                            } else {
                                message.to.push(to);
                                b"250 OK\r\n"
                            }
                        } else if upper == "DATA" {
                            let _ = write.write_all(b"354 go on\r\n").await;
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                                data.push_str("\r\n");
                            }
                            message.data = data;
                            mailbox.lock().unwrap().push(std::mem::take(&mut message));
                            b"250 queued\r\n"
                        } else if upper == "QUIT" {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            b"250 OK\r\n"
                        };
                        let _ = write.write_all(reply).await;
                    }
                });
            }
        });
        SmtpSink {
            addr,
            received,
            asked,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
