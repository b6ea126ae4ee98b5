//! Builders for every NATS subject IDunno uses. No other code writes subject strings.

/// The prefix of every IDunno subject; the version bumps only with an incompatible protocol.
pub const PREFIX: &str = "idunno.v1";

/// Public: join / alive / suspect / fail / leave events of cluster members.
pub fn member_events() -> String {
    format!("{PREFIX}.members.events")
}

/// Failure-detector traffic (ping, ping-req, ack) addressed to one node.
pub fn member_fd(node_id: &str) -> String {
    format!("{PREFIX}.members.fd.{node_id}")
}

/// Request/reply: any one live node answers with its membership view (queue group
/// [`MEMBERS_QUEUE`]).
pub fn members_list() -> String {
    format!("{PREFIX}.members.list")
}

/// Queue group of [`members_list`].
pub const MEMBERS_QUEUE: &str = "idunno-members";

/// Request/reply: control command `op` for one node ([`crate::control::ControlRequest::op`]:
/// ping, members, stat, drop_rate, clear_log, leave, join). The operation is the subject's last
/// token so that NATS permissions can allow one operation and refuse another.
pub fn node_control(node_id: &str, op: &str) -> String {
    format!("{PREFIX}.nodes.{node_id}.ctl.{op}")
}

/// Every control operation of one node, for its subscription.
pub fn node_control_all(node_id: &str) -> String {
    node_control(node_id, "*")
}

/// Request/reply: SDFS metadata request `op` ([`crate::sdfs::SdfsRequest::op`]); any one node
/// answers (queue group [`SDFS_QUEUE`]).
pub fn sdfs_rpc(op: &str) -> String {
    format!("{PREFIX}.sdfs.rpc.{op}")
}

/// Every SDFS metadata operation, for the nodes' queue subscription.
pub fn sdfs_rpc_all() -> String {
    sdfs_rpc("*")
}

/// Checks that a request whose payload is operation `op` came on that operation's subject
/// (`build(op)`, as [`sdfs_rpc`]). A node serving a wildcard subscription refuses any other: a
/// `delete` sent on the subject of `ls` would slip past NATS permissions that allow only `ls`.
pub fn check_op(subject: &str, op: &str, build: impl Fn(&str) -> String) -> Result<(), String> {
    let expected = build(op);
    match subject == expected {
        true => Ok(()),
        false => Err(format!(
            "a {op:?} request must be sent on {expected}, not on {subject}"
        )),
    }
}

/// Queue group of [`sdfs_rpc`].
pub const SDFS_QUEUE: &str = "idunno-sdfs";

/// Request/reply: one page of the blobs a node holds, with their labels
/// ([`crate::fsck::InventoryRequest`]), for `idunno fsck`.
pub fn sdfs_inventory(node_id: &str) -> String {
    format!("{PREFIX}.sdfs.node.{node_id}.inventory")
}

/// Request/reply: ask one node to fetch and keep a blob ([`crate::sdfs::StoreRequest`]).
pub fn sdfs_store(node_id: &str) -> String {
    format!("{PREFIX}.sdfs.node.{node_id}.store")
}

/// Request/reply: chunks of the blobs one node holds ([`crate::sdfs::ChunkRequest`]).
pub fn sdfs_read(node_id: &str) -> String {
    format!("{PREFIX}.sdfs.node.{node_id}.read")
}

/// Request/reply: chunks of a blob being put, served by the writer during the put.
pub fn sdfs_upload(blob: &str) -> String {
    format!("{PREFIX}.sdfs.upload.{blob}")
}

/// Public: job submitted / started / reassigned / finished / failed / cancelled
/// ([`crate::jobs::JobEvent`]).
pub fn job_events() -> String {
    format!("{PREFIX}.jobs.events")
}

/// Public: periodic progress of one job ([`crate::jobs::Progress`]).
pub fn job_progress(job_id: &str) -> String {
    format!("{PREFIX}.jobs.{job_id}.progress")
}

/// Request/reply: jobs request `op` ([`crate::jobs::JobsRequest::op`]: submit, list, get,
/// cancel, batch, qps, set_qps); any one node answers (queue group [`JOBS_QUEUE`]).
pub fn jobs_rpc(op: &str) -> String {
    format!("{PREFIX}.jobs.rpc.{op}")
}

/// Every jobs operation, for the nodes' queue subscription.
pub fn jobs_rpc_all() -> String {
    jobs_rpc("*")
}

/// Queue group of [`jobs_rpc`].
pub const JOBS_QUEUE: &str = "idunno-jobs";

/// Request/reply: the cluster's JetStream replication, read or set
/// ([`crate::cluster::ClusterRequest::op`]: status, replicas, remove_server); any one node
/// answers (queue group [`CLUSTER_QUEUE`]).
pub fn cluster_rpc(op: &str) -> String {
    format!("{PREFIX}.cluster.rpc.{op}")
}

/// Every cluster operation, for the nodes' queue subscription.
pub fn cluster_rpc_all() -> String {
    cluster_rpc("*")
}

/// Queue group of [`cluster_rpc`].
pub const CLUSTER_QUEUE: &str = "idunno-cluster";

/// Public: the results of an inference job, one message per batch
/// ([`crate::serve::ResultsBatch`]); captured by the stream [`RESULTS_STREAM`].
pub fn job_results(job_id: &str) -> String {
    format!("{PREFIX}.jobs.{job_id}.results")
}

/// Every job's results, for the stream's subject filter.
pub fn all_job_results() -> String {
    format!("{PREFIX}.jobs.*.results")
}

/// The JetStream stream that keeps inference results (with retention limits) and drops a
/// second copy of a batch stored by the same worker, by its message id.
pub const RESULTS_STREAM: &str = "IDUNNO_RESULTS";

/// Internal: the batches of an inference job the coordinator accepted
/// ([`crate::serve::Accepted`]); captured by the stream [`ACCEPTED_STREAM`].
pub fn job_accepted(job_id: &str) -> String {
    format!("{PREFIX}.jobs.{job_id}.accepted")
}

/// Every job's accepted batches, for the stream's subject filter.
pub fn all_job_accepted() -> String {
    format!("{PREFIX}.jobs.*.accepted")
}

/// The JetStream stream that keeps the coordinator's record of accepted batches, so that a
/// new coordinator builds the results file from the same batches.
pub const ACCEPTED_STREAM: &str = "IDUNNO_ACCEPTED";

/// The KV bucket of SDFS metadata (file versions, their holders, the epoch marker).
pub const SDFS_BUCKET: &str = "idunno-sdfs";

/// The KV bucket of job records.
pub const JOBS_BUCKET: &str = "idunno-jobs";

/// The KV bucket of cluster-wide settings (fair time, copies).
pub const SETTINGS_BUCKET: &str = "idunno-settings";

/// The KV bucket of model routes: aliases and canary rollouts (see [`crate::models`]).
pub const MODELS_BUCKET: &str = "idunno-models";

/// The KV bucket of the coordinator lease.
pub const LEASE_BUCKET: &str = "idunno-coord";

/// Request/reply: batches of one inference job for one of the workers serving it
/// ([`crate::serve::WorkBatch`]). Each worker has its own subject, so the coordinator decides
/// who runs a batch and never sends one to a worker it knows to be frozen or gone (a frozen
/// process keeps its subscriptions on the server until the server's ping timeout, minutes).
pub fn job_work(job_id: &str, node_id: &str) -> String {
    format!("{PREFIX}.jobs.{job_id}.work.{node_id}")
}

/// Request/reply: like [`job_work`], for batches sent again after the worker holding them was
/// lost. The worker takes these before the batches waiting on [`job_work`], so the lost work
/// is done first rather than behind what the worker was given before.
pub fn job_work_again(job_id: &str, node_id: &str) -> String {
    format!("{PREFIX}.jobs.{job_id}.work.{node_id}.again")
}

/// Nodes only: the exchange of the workers of attempt `attempt` of data-parallel training job
/// `job_id` ([`crate::dp::DpMessage`]): hellos, gradient parts and state parts.
pub fn dp_exchange(job_id: &str, attempt: &str) -> String {
    format!("{PREFIX}.train.{job_id}.{attempt}")
}

/// Request/reply: tell one worker to join or leave a job's work queue
/// ([`crate::serve::AssignRequest`]).
pub fn node_assign(node_id: &str) -> String {
    format!("{PREFIX}.nodes.{node_id}.assign")
}

/// Request/reply, queue group [`INFER_QUEUE`]: online inference of a few images
/// ([`crate::infer::InferRequest`]); any node answers, batching the requests it receives.
pub fn infer() -> String {
    format!("{PREFIX}.infer")
}

/// The queue group of [`infer`].
pub const INFER_QUEUE: &str = "idunno-infer";

/// Request/reply, queue group [`INFER_MODEL_QUEUE`]: describe a model and have it loaded for
/// online inference ([`crate::infer::ModelQuery`]); any node answers. Separate from [`infer`]
/// so that a node shedding online requests (out of that queue group) still answers it.
pub fn infer_model() -> String {
    format!("{PREFIX}.infer.model")
}

/// The queue group of [`infer_model`].
pub const INFER_MODEL_QUEUE: &str = "idunno-infer-model";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_under_the_versioned_prefix() {
        assert_eq!(member_events(), "idunno.v1.members.events");
        assert_eq!(member_fd("n1"), "idunno.v1.members.fd.n1");
        assert_eq!(node_control("n1", "stat"), "idunno.v1.nodes.n1.ctl.stat");
        assert_eq!(sdfs_rpc("ls"), "idunno.v1.sdfs.rpc.ls");
        assert!(check_op("idunno.v1.sdfs.rpc.ls", "ls", sdfs_rpc).is_ok());
        assert!(check_op("idunno.v1.sdfs.rpc.ls", "delete", sdfs_rpc).is_err());
        assert_eq!(members_list(), "idunno.v1.members.list");
        assert_eq!(sdfs_store("n1"), "idunno.v1.sdfs.node.n1.store");
        assert_eq!(sdfs_upload("b1"), "idunno.v1.sdfs.upload.b1");
        assert_eq!(job_progress("t-1"), "idunno.v1.jobs.t-1.progress");
        assert_eq!(jobs_rpc("list"), "idunno.v1.jobs.rpc.list");
        assert_eq!(job_accepted("s-1"), "idunno.v1.jobs.s-1.accepted");
    }
}
