//! A tiny HTTP collector for tests: answers 200 `{"status":1}` and records each body.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

pub struct Recorder {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<Value>>>,
    gate: Arc<Gate>,
}

/// Holds the answers until opened (see [`Recorder::gated`]).
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
    }
}

impl Recorder {
    pub fn start() -> Recorder {
        Recorder::with_gate(false)
    }

    /// Records each request at once but answers none until [`Recorder::release`].
    pub fn gated() -> Recorder {
        Recorder::with_gate(true)
    }

    /// Listens on `addr` (e.g. the address of an endpoint that was down until now).
    pub fn at(addr: &str) -> Recorder {
        Recorder::listen(addr, false)
    }

    fn with_gate(closed: bool) -> Recorder {
        Recorder::listen("127.0.0.1:0", closed)
    }

    fn listen(addr: &str, closed: bool) -> Recorder {
        let listener = TcpListener::bind(addr).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Gate {
            closed: Mutex::new(closed),
            opened: Condvar::new(),
        });
        let (b, g) = (bodies.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, g) = (b.clone(), g.clone());
                std::thread::spawn(move || serve(stream, &b, &g));
            }
        });
        Recorder { url, bodies, gate }
    }

    /// Answer the held requests, and every later one at once.
    pub fn release(&self) {
        *self.gate.closed.lock().unwrap() = false;
        self.gate.opened.notify_all();
    }

    /// How many requests arrived (answered or held).
    pub fn requests(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Every event received, in order.
    pub fn events(&self) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .flat_map(|b| b["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    }
}

fn serve(stream: TcpStream, bodies: &Mutex<Vec<Value>>, gate: &Gate) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if h == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(v) = serde_json::from_slice(&body) {
            bodies.lock().unwrap().push(v);
        }
        gate.pass();
        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"status\":1}";
        if (&stream).write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
