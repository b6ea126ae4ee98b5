//! Who may do what on the bus: the NATS permissions of each role, built from the subject
//! builders of [`crate::subjects`] so that they cannot drift from the subjects the code uses.
//!
//! Every identity is one NATS user (an NKEY) with the permissions of its role; the server
//! refuses whatever they do not allow. Each identity has its own reply inbox prefix
//! ([`inbox_prefix`]), and only it may subscribe there, so no identity reads another's replies.
//!
//! - [`Role::Node`]: one identity per node, bound to its id: it subscribes to its own
//!   failure-detector, control, store, read and work subjects only, and to the nodes' queue
//!   groups. Only nodes publish membership events, progress, results, work, stores and
//!   JetStream traffic.
//! - [`Role::Operator`]: the CLI and automation: jobs, files, models and datasets, membership
//!   commands, cluster settings. It answers only the requests it receives (the chunk requests
//!   of its own puts).
//! - [`Role::Viewer`]: dashboards, watchers and outside tools: members, files and jobs lists,
//!   gets, the public event subjects and `infer`; nothing that changes state.
//! - [`Role::Admin`]: every IDunno subject and JetStream. Not generated for a cluster by
//!   default: the test harness uses it to play a buggy or hostile peer.

use crate::subjects::{self as s, PREFIX};

/// A role: the permissions an identity gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A cluster node (one identity per node id).
    Node,
    /// The CLI and automation: changes state.
    Operator,
    /// Reads public subjects, lists, gets and `infer`.
    Viewer,
    /// Everything (tests only).
    Admin,
}

impl Role {
    /// The role's name, as `secure init` and the docs write it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    /// The role of a name written by [`Role::name`].
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Node, Role::Operator, Role::Viewer, Role::Admin]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// The identity of node `id`: `node-<id>`.
pub fn node_identity(id: &str) -> String {
    format!("node-{id}")
}

/// The reply inbox prefix of `identity` (`_INBOX.<identity>`): its requests' answers arrive
/// under it, and only that identity may subscribe there.
pub fn inbox_prefix(identity: &str) -> String {
    format!("_INBOX.{identity}")
}

/// What one identity may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to (NATS wildcards allowed).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to; `"<subject> <queue>"` allows only that queue group.
    pub subscribe: Vec<String>,
    /// Whether it may answer the requests it receives (their reply subjects), beyond
    /// `publish`: one answer each.
    pub allow_responses: bool,
}

/// A queue subscription's permission: `subject` in queue group `queue` only.
fn queue(subject: String, queue: &str) -> String {
    format!("{subject} {queue}")
}

/// Subjects every role may read: the public event subjects.
fn public_events() -> Vec<String> {
    vec![
        s::member_events(),
        s::job_events(),
        s::job_progress("*"),
        s::job_results("*"),
    ]
}

/// The JetStream API and the subjects of its KV buckets, acks and flow control.
const JETSTREAM: [&str; 4] = ["$JS.API.>", "$KV.>", "$JS.ACK.>", "$JS.FC.>"];

/// The permissions of `identity` in `role`; for [`Role::Node`], `node` is the node id.
pub fn permissions(role: Role, identity: &str, node: &str) -> Permissions {
    let inbox = format!("{}.>", inbox_prefix(identity));
    match role {
        Role::Node => node_permissions(node, inbox),
        Role::Operator => {
            let mut publish = vec![s::members_list(), s::node_control("*", "*")];
            let sdfs_ops = [
                "prepare",
                "write",
                "locate",
                "ls",
                "delete",
                "del_dir",
                "restore",
                "report_corrupt",
            ];
            publish.extend(sdfs_ops.map(s::sdfs_rpc));
            publish.extend([s::sdfs_read("*"), s::sdfs_inventory("*")]);
            publish.extend([
                s::jobs_rpc("*"),
                s::cluster_rpc("*"),
                s::infer(),
                s::infer_model(),
            ]);
            let mut subscribe = public_events();
            subscribe.extend([s::sdfs_upload("*"), inbox]);
            Permissions {
                publish,
                subscribe,
                allow_responses: true,
            }
        }
        Role::Viewer => {
            let mut publish = vec![s::members_list()];
            publish.extend(["locate", "ls"].map(s::sdfs_rpc));
            publish.extend([s::sdfs_read("*"), s::sdfs_inventory("*")]);
            publish.extend(["list", "get", "qps", "outputs", "routes"].map(s::jobs_rpc));
            publish.extend([s::cluster_rpc("status"), s::infer(), s::infer_model()]);
            let mut subscribe = public_events();
            subscribe.push(inbox);
            Permissions {
                publish,
                subscribe,
                allow_responses: false,
            }
        }
        Role::Admin => {
            let mut all = vec![format!("{PREFIX}.>"), "_INBOX.>".to_string()];
            all.extend(JETSTREAM.map(String::from));
            Permissions {
                publish: all.clone(),
                subscribe: all,
                allow_responses: true,
            }
        }
    }
}

fn node_permissions(id: &str, inbox: String) -> Permissions {
    let mut publish = public_events();
    publish.extend([
        s::member_fd("*"),
        s::members_list(),
        s::node_control("*", "members"),
        s::node_control("*", "ping"),
        s::node_control("*", "stat"),
        s::node_control("*", "rollout"),
        s::node_assign("*"),
        s::sdfs_rpc("*"),
        s::sdfs_store("*"),
        s::sdfs_read("*"),
        s::sdfs_inventory("*"),
        s::sdfs_upload("*"),
        s::job_accepted("*"),
        s::job_work("*", "*"),
        s::job_work_again("*", "*"),
        s::jobs_rpc("*"),
        s::cluster_rpc("status"),
        s::infer(),
        s::infer_model(),
        s::dp_exchange("*", "*"),
        // Answers to any identity's requests: nodes answer everyone.
        "_INBOX.>".into(),
    ]);
    publish.extend(JETSTREAM.map(String::from));
    let mut subscribe = public_events();
    subscribe.extend([
        s::member_fd(id),
        queue(s::members_list(), s::MEMBERS_QUEUE),
        s::node_control_all(id),
        s::node_assign(id),
        queue(s::sdfs_rpc_all(), s::SDFS_QUEUE),
        s::sdfs_store(id),
        s::sdfs_read(id),
        s::sdfs_inventory(id),
        s::sdfs_upload("*"),
        s::job_work("*", id),
        s::job_work_again("*", id),
        queue(s::jobs_rpc_all(), s::JOBS_QUEUE),
        queue(s::cluster_rpc_all(), s::CLUSTER_QUEUE),
        queue(s::infer(), s::INFER_QUEUE),
        queue(s::infer_model(), s::INFER_MODEL_QUEUE),
        s::dp_exchange("*", "*"),
        inbox,
    ]);
    Permissions {
        publish,
        subscribe,
        allow_responses: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether NATS subject pattern `pattern` matches the literal subject `subject`.
    fn matches(pattern: &str, subject: &str) -> bool {
        let (p, t): (Vec<_>, Vec<_>) = (pattern.split('.').collect(), subject.split('.').collect());
        for (i, tok) in p.iter().enumerate() {
            match *tok {
                ">" => return t.len() > i,
                "*" if i < t.len() => {}
                lit if t.get(i) == Some(&lit) => {}
                _ => return false,
            }
        }
        p.len() == t.len()
    }

    fn may_publish(role: Role, subject: &str) -> bool {
        let p = permissions(role, "x", "n1");
        p.publish.iter().any(|pat| matches(pat, subject))
    }

    #[test]
    fn only_nodes_publish_what_nodes_say() {
        let node_only = [
            s::member_events(),
            s::member_fd("n2"),
            s::sdfs_store("n2"),
            s::sdfs_rpc("commit"),
            s::job_results("j"),
            s::job_progress("j"),
            s::job_work("j", "n2"),
            s::node_assign("n2"),
            "$JS.API.STREAM.INFO.X".into(),
        ];
        for subject in &node_only {
            assert!(may_publish(Role::Node, subject), "{subject}");
            assert!(!may_publish(Role::Operator, subject), "{subject}");
            assert!(!may_publish(Role::Viewer, subject), "{subject}");
        }
    }

    #[test]
    fn viewers_change_nothing() {
        for subject in [
            s::sdfs_rpc("delete"),
            s::sdfs_rpc("del_dir"),
            s::sdfs_rpc("write"),
            s::jobs_rpc("submit"),
            s::jobs_rpc("cancel"),
            s::jobs_rpc("set_qps"),
            s::node_control("n1", "stat"),
            s::cluster_rpc("replicas"),
            "_INBOX.operator.abc".into(),
        ] {
            assert!(!may_publish(Role::Viewer, &subject), "{subject}");
        }
        for subject in [
            s::sdfs_rpc("ls"),
            s::jobs_rpc("list"),
            s::infer(),
            s::infer_model(),
        ] {
            assert!(may_publish(Role::Viewer, &subject), "{subject}");
        }
    }

    #[test]
    fn a_node_subscribes_to_its_own_subjects_only() {
        let p = permissions(Role::Node, &node_identity("n1"), "n1");
        let may = |subject: &str| p.subscribe.iter().any(|pat| matches(pat, subject));
        assert!(may(&s::node_control("n1", "leave")));
        assert!(!may(&s::node_control("n2", "leave")));
        assert!(may(&s::job_work("j", "n1")));
        assert!(!may(&s::job_work("j", "n2")));
        assert!(may(&s::job_work_again("j", "n1")));
        assert!(!may(&s::job_work_again("j", "n2")));
        assert!(may("_INBOX.node-n1.abc.1"));
        assert!(!may("_INBOX.node-n2.abc.1"));
    }

    #[test]
    fn roles_round_trip_their_names() {
        for r in [Role::Node, Role::Operator, Role::Viewer, Role::Admin] {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
