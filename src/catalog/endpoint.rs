//! A provider's base URL, split into what Envoy's cluster (scheme, host, port) and the upstream role
//! (`:authority`, path prefix) need.

/// The parsed `providers[].endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` → TLS with SNI and certificate verification.
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (defaults 443 / 80).
    pub port: u16,
    /// Path prefix without a trailing slash (`/v1`, or empty).
    pub path_prefix: String,
    /// The `:authority` sent to the provider (host, plus the port when not the scheme's default).
    pub authority: String,
}

impl Endpoint {
    /// Parses `scheme://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("\"{url}\" must start with http:// or https://"));
        };
        let (hostport, path) = rest.find('/').and_then(|i| rest.split_at_checked(i)).unwrap_or((rest, ""));
        if path.contains(['?', '#']) || path.bytes().any(|b| !(b'!'..=b'~').contains(&b)) {
            return Err(format!("\"{url}\": the path must be plain (no query, fragment or spaces)"));
        }
        let (host, port) =
            split_host_port(hostport).ok_or_else(|| format!("\"{url}\": invalid host or port"))?;
        let default_port = if tls { 443 } else { 80 };
        let port = port.unwrap_or(default_port);
        let bracketed = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        let authority = if port == default_port { bracketed } else { format!("{bracketed}:{port}") };
        Ok(Endpoint {
            tls,
            host: host.to_string(),
            port,
            path_prefix: path.trim_end_matches('/').to_string(),
            authority,
        })
    }

    /// True when the host is an IP literal (Envoy then needs no DNS and SNI is not sent).
    pub fn host_is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = if after.is_empty() { None } else { Some(after.strip_prefix(':')?) };
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid_host =
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}
