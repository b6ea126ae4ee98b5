//! The walk-through's steps and blocks, read from the README, and the text of a block made
//! concrete for one test machine (its root directory, the machines' addresses, the bundle).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// The README section the walk-through is in.
const SECTION: &str = "## Running on several machines";
/// The info string of the fences the test runs.
const FENCE: &str = "```sh walkthrough";

/// Where a block runs, from its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `# on every machine…`: each machine of the cluster, with `ME` set to its letter.
    Every,
    /// `# on machine x…`: that machine alone.
    Machine(char),
    /// `# anywhere…`: any host that reaches the servers (the test's own).
    Anywhere,
}

/// One block to run.
#[derive(Debug, Clone)]
pub struct Block {
    /// Where it runs.
    pub place: Place,
    /// Its text, as written.
    pub script: String,
}

/// One numbered step (`### N. …`) and its blocks.
#[derive(Debug, Clone)]
pub struct Step {
    /// N.
    pub number: u32,
    /// Its blocks, in order.
    pub blocks: Vec<Block>,
}

/// The numbered steps of the README's several-machines section that hold blocks to run.
pub fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find(SECTION)
        .expect("the README's several-machines section");
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("### ") {
            let number = title.split('.').next().and_then(|n| n.parse().ok());
            if let Some(number) = number {
                steps.push(Step {
                    number,
                    blocks: Vec::new(),
                });
            }
        } else if line.trim_end() == FENCE {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            let step = steps
                .last_mut()
                .expect("a walk-through block outside a step");
            step.blocks.push(Block {
                place: place(body.first().copied().unwrap_or_default()),
                script: body.join("\n") + "\n",
            });
        }
    }
    steps.retain(|s| !s.blocks.is_empty());
    steps
}

fn place(first: &str) -> Place {
    if first.starts_with("# on every machine") {
        Place::Every
    } else if let Some(rest) = first.strip_prefix("# on machine ") {
        Place::Machine(rest.chars().next().expect("a machine letter"))
    } else if first.starts_with("# anywhere") {
        Place::Anywhere
    } else {
        panic!("a walk-through block starts with where it runs, not {first:?}")
    }
}

/// What a block's text names, made concrete for one test machine.
pub struct Concrete<'a> {
    /// The machine's root directory (`/opt`, `/etc/idunno`, … live under it), if the block
    /// runs on a machine.
    pub root: Option<&'a Path>,
    /// Each machine's address, by letter (`machine-a` becomes `10.213.k.10` where a whole
    /// word: not in `machine-$ME` or `machine-ab`).
    pub addresses: &'a BTreeMap<char, Ipv4Addr>,
    /// The bundle's name, for the README's `idunno-<version>-linux-<arch>`.
    pub bundle: &'a str,
}

/// The system paths a block may write, moved under the machine's root directory.
const MOVED: &[&str] = &[
    "/opt",
    "/etc/idunno",
    "/etc/systemd/system",
    "/var/lib/idunno",
];

impl Concrete<'_> {
    /// `script` with the machine's paths, the addresses and the bundle's name put in.
    pub fn apply(&self, script: &str) -> String {
        let mut text = bundle_name(script, self.bundle);
        for (letter, ip) in self.addresses {
            text = replace_word(&text, &format!("machine-{letter}"), &ip.to_string());
        }
        match self.root {
            Some(root) => move_paths(&text, &root.display().to_string()),
            None => text,
        }
    }
}

/// `text` with each `word` that no letter, digit, `-` or `_` follows replaced by `by`.
fn replace_word(text: &str, word: &str, by: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let after = &rest[at + word.len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || "-_".contains(c));
        out.push_str(&rest[..at]);
        out.push_str(if whole { by } else { word });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Replaces every `idunno-<digit…>-linux-<arch>` with `name`.
fn bundle_name(text: &str, name: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("idunno-") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "idunno-".len()..];
        let token = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
            .map_or(tail, |end| &tail[..end]);
        let is_bundle = token.starts_with(|c: char| c.is_ascii_digit())
            && token.contains("-linux-")
            && !token.ends_with(".tar.gz");
        let is_archive = token.starts_with(|c: char| c.is_ascii_digit())
            && token.contains("-linux-")
            && token.ends_with(".tar.gz");
        if is_archive {
            out.push_str(&format!("{name}.tar.gz"));
            rest = &tail[token.len()..];
        } else if is_bundle {
            out.push_str(name);
            rest = &tail[token.len()..];
        } else {
            out.push_str("idunno-");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Puts `root` before each of [`MOVED`] where a path starts (after a space, `=` or a quote,
/// or at a line's start) and the prefix is whole (a `/`, a space, a quote or the end follows).
fn move_paths(text: &str, root: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    'scan: while i < text.len() {
        let starts_path = i == 0 || b" =\"'\n\t".contains(&bytes[i - 1]);
        if starts_path {
            for prefix in MOVED {
                if !text[i..].starts_with(prefix) {
                    continue;
                }
                let next = bytes.get(i + prefix.len()).copied();
                if next.is_none_or(|b| b"/ \"'\n\t".contains(&b)) {
                    out.push_str(root);
                    out.push_str(prefix);
                    i += prefix.len();
                    continue 'scan;
                }
            }
        }
        let c = text[i..].chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8().max(1);
    }
    out
}

#[test]
fn blocks_are_made_concrete() {
    let addresses = BTreeMap::from([('a', Ipv4Addr::new(10, 0, 0, 10))]);
    let root = Path::new("/r/a");
    let c = Concrete {
        root: Some(root),
        addresses: &addresses,
        bundle: "idunno-9.9.9-linux-x",
    };
    let got = c.apply(
        "tar -C /opt -xzf idunno-0.1.0-linux-x86_64.tar.gz\nln -sfn /opt/idunno-0.1.0-linux-x86_64 /opt/idunno\n\
         X=/var/lib/idunno/nats\nR=[nats-route://machine-a:6222]\nIDUNNO_HOST=machine-$ME\n/optional /etc/idunnox\n\
         --server idunno-a=machine-a --host machine-a\nmachine-ab\n",
    );
    assert_eq!(
        got,
        "tar -C /r/a/opt -xzf idunno-9.9.9-linux-x.tar.gz\nln -sfn /r/a/opt/idunno-9.9.9-linux-x /r/a/opt/idunno\n\
         X=/r/a/var/lib/idunno/nats\nR=[nats-route://10.0.0.10:6222]\nIDUNNO_HOST=machine-$ME\n/optional /etc/idunnox\n\
         --server idunno-a=10.0.0.10 --host 10.0.0.10\nmachine-ab\n"
    );
}
