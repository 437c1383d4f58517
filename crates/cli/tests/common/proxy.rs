//! TLS and a reverse proxy for tests: a CA made for one test (rcgen), the certificates it
//! signs, an HTTP client that trusts only it, and Debian's nginx run in the foreground on a
//! server block under test.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA made for one test, and the files it wrote.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "anonstats test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestCa {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `names` signed by this CA: (cert file, key file).
    pub fn server_cert(&self, tag: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("sign");
        self.write(tag, &cert.pem(), &key.serialize_pem())
    }

    /// A self-signed server certificate for `names`, signed by no CA.
    pub fn self_signed(&self, tag: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("self-sign");
        self.write(tag, &cert.pem(), &key.serialize_pem())
    }

    pub fn write(&self, tag: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            self.dir.path().join(format!("{tag}.crt")),
            self.dir.path().join(format!("{tag}.key")),
        );
        std::fs::write(&c, cert).expect("write cert");
        std::fs::write(&k, key).expect("write key");
        (c, k)
    }

    /// An HTTP client that trusts only this CA.
    pub fn client(&self) -> ureq::Agent {
        let pem = std::fs::read(self.ca_file()).unwrap();
        let root = ureq::tls::Certificate::from_pem(&pem).unwrap();
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
                    .build(),
            )
            .build()
            .into()
    }
}

/// Whether nginx is installed: in CI its absence fails the test, elsewhere it is skipped.
pub fn nginx_present() -> bool {
    let ok = Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is required in CI but missing: apt-get install -y nginx"
        );
        eprintln!("skipped: nginx is missing (apt-get install -y nginx)");
    }
    ok
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx in the foreground serving one `server { ... }` block, until dropped.
pub struct Nginx {
    child: std::process::Child,
    pub dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on `server` (a server block, as a site file holds it) with its
    /// files in `dir`; returns once it accepts connections on `listen`.
    pub fn start(dir: &Path, server: &str, listen: &str) -> Nginx {
        std::fs::create_dir_all(dir).unwrap();
        let r = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
                 events {{}}\nhttp {{\naccess_log off;\nclient_body_temp_path {r}/body;\n\
                 proxy_temp_path {r}/proxy;\nfastcgi_temp_path {r}/fastcgi;\n\
                 uwsgi_temp_path {r}/uwsgi;\nscgi_temp_path {r}/scgi;\n{server}\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .args(["-p", &r.to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            child,
            dir: dir.to_path_buf(),
        };
        // Ready once it accepts connections.
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(listen).is_err() {
            assert!(
                Instant::now() < until,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
