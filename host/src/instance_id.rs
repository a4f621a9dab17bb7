//! Where an instance's id comes from when an orchestrator runs txform: `--instance-id`, the
//! `TXFORM_INSTANCE_ID` environment variable, or the ordinal of a StatefulSet pod's name
//! (`--instance-id-from-hostname`: `txform-3` -> `3`), so one manifest scales and a restarted pod
//! keeps its id (and fences its predecessor at once).

/// The environment variable that sets the instance id.
pub const ENV: &str = "TXFORM_INSTANCE_ID";

/// How the command line asked for the instance id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `--instance-id`.
    pub flag: Option<String>,
    /// `--instance-id-from-hostname`.
    pub from_hostname: bool,
}

/// The instance id to use instead of `transaction.instance_id`, if any. `env` and `hostname` are
/// the environment's answers (injected, so the rule is testable): `--instance-id` wins, then
/// `--instance-id-from-hostname`, then `TXFORM_INSTANCE_ID`; an empty variable counts as unset.
pub fn resolve(
    request: &Request,
    env: Option<String>,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<Option<String>, String> {
    if let Some(id) = &request.flag {
        return Ok(Some(id.clone()));
    }
    if request.from_hostname {
        let name = hostname().ok_or("--instance-id-from-hostname: cannot read the host name")?;
        return ordinal(&name).map(|id| Some(id.to_string()));
    }
    Ok(env.filter(|id| !id.trim().is_empty()))
}

/// The ordinal a StatefulSet gives its pod: the digits after the name's last `-`.
pub fn ordinal(hostname: &str) -> Result<&str, String> {
    // A FQDN (`txform-3.txform.ns.svc`) names the pod in its first label.
    let pod = hostname.split('.').next().unwrap_or_default();
    match pod.rsplit_once('-') {
        Some((set, n))
            if !set.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(n)
        }
        _ => Err(format!(
            "--instance-id-from-hostname: host name {hostname:?} does not end in `-<ordinal>` \
             like a StatefulSet pod's (`txform-3`)"
        )),
    }
}

/// The host name: `HOSTNAME` (which Kubernetes sets to the pod name), else the kernel's.
pub fn hostname() -> Option<String> {
    if let Some(name) = std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8(buffer[..end].to_vec())
        .ok()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(flag: Option<&str>, from_hostname: bool) -> Request {
        Request {
            flag: flag.map(str::to_string),
            from_hostname,
        }
    }

    #[test]
    fn a_statefulset_pod_name_gives_its_ordinal() {
        assert_eq!(ordinal("txform-3"), Ok("3"));
        assert_eq!(ordinal("orders-enricher-12"), Ok("12"));
        assert_eq!(ordinal("txform-0.txform.prod.svc.cluster.local"), Ok("0"));
        for bad in ["txform", "txform-", "-3", "txform-3a", "txform-x", ""] {
            let error = ordinal(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn the_flag_wins_then_the_hostname_then_the_environment() {
        let env = || Some("9".to_string());
        let host = || Some("txform-4".to_string());
        assert_eq!(
            resolve(&request(Some("1"), false), env(), host),
            Ok(Some("1".into()))
        );
        assert_eq!(
            resolve(&request(None, true), env(), host),
            Ok(Some("4".into()))
        );
        assert_eq!(
            resolve(&request(None, false), env(), host),
            Ok(Some("9".into()))
        );
        assert_eq!(
            resolve(&request(None, false), Some(" ".into()), host),
            Ok(None)
        );
        assert_eq!(resolve(&request(None, false), None, host), Ok(None));
        assert!(resolve(&request(None, true), None, || Some("laptop".into())).is_err());
        assert!(resolve(&request(None, true), None, || None).is_err());
    }
}
