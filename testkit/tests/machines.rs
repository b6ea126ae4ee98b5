//! The machines harness itself: a single machine, bare machines, a machine added later, and a
//! script run inside one.

use std::path::Path;
use std::time::Duration;
use testkit::Machines;

#[test]
fn one_machine_runs_jetstream_on_its_own() {
    if let Some(why) = testkit::machines_unavailable() {
        panic!("{why}");
    }
    // Its server has no cluster block (JetStream refuses a cluster without routes);
    // `start` waits until its JetStream is healthy.
    let mut m = Machines::start(Path::new("idunno-node"), 1);
    assert!(m.machines[0].nats_running());
}

#[test]
fn a_machine_added_to_bare_ones_runs_scripts_at_its_own_address() {
    if let Some(why) = testkit::machines_unavailable() {
        panic!("{why}");
    }
    let mut m = Machines::bare(1);
    let i = m.add_machine();
    assert_eq!((i, m.machines[i].name.as_str()), (1, "b"));
    let dir = m.machines[i].dir().to_path_buf();
    let envs = [("GREETING", "hello".to_string())];
    let limit = Duration::from_secs(10);
    let ran = m.sh(
        i,
        "echo $GREETING; ip -4 -o addr show dev eth0",
        &envs,
        &dir,
        limit,
    );
    assert!(ran.ok, "{}", ran.output);
    assert!(ran.output.starts_with("hello\n"), "{}", ran.output);
    let slow = m.sh(i, "sleep 30", &[], &dir, Duration::from_millis(300));
    assert!(
        !slow.ok && slow.output.contains("killed"),
        "{}",
        slow.output
    );
    let own = m.machines[i].ip.to_string();
    assert!(ran.output.contains(&own), "{}", ran.output);
}
