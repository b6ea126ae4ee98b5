//! A float vector put together from its parts, each placed once.

use bus_schemas::dp::Part;

/// A vector being received part by part.
#[derive(Debug, Clone)]
pub struct Assembler {
    len: u64,
    count: u32,
    got: Vec<bool>,
    missing: u32,
    values: Vec<f32>,
}

impl Assembler {
    /// An empty vector of `len` values in `count` parts, for the first part seen.
    pub fn for_part(part: &Part) -> Option<Assembler> {
        part.span()?;
        Some(Assembler {
            len: part.len,
            count: part.count,
            got: vec![false; part.count as usize],
            missing: part.count,
            values: vec![0.0; part.len as usize],
        })
    }

    /// A vector already whole (this worker's own contribution).
    pub fn whole(values: Vec<f32>) -> Assembler {
        Assembler {
            len: values.len() as u64,
            count: 1,
            got: vec![true],
            missing: 0,
            values,
        }
    }

    /// Places `part` unless it was placed already or does not belong to this vector; whether
    /// it was placed.
    pub fn put(&mut self, part: &Part) -> bool {
        if part.len != self.len || part.count != self.count {
            return false;
        }
        let Some((offset, n)) = part.span() else {
            return false;
        };
        let slot = &mut self.got[part.index as usize];
        if *slot {
            return false;
        }
        *slot = true;
        self.missing -= 1;
        let out = &mut self.values[offset as usize..(offset + n) as usize];
        for (v, c) in out.iter_mut().zip(part.data.chunks_exact(4)) {
            *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        true
    }

    /// Whether every part is in.
    pub fn done(&self) -> bool {
        self.missing == 0
    }

    /// Values of the whole vector.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the vector has no values (never, for a vector made from a valid part).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values (complete once [`Assembler::done`]).
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// The values so far.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_schemas::dp::{parts, PartKind};

    #[test]
    fn parts_in_any_order_once_each_make_the_vector() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let mut split = parts(PartKind::Grad, 3, 7, "n2", &values, 64);
        split.reverse();
        let mut a = Assembler::for_part(&split[0]).expect("a valid part");
        for p in &split {
            assert!(a.put(p));
            assert!(!a.put(p), "a duplicate is not placed twice");
        }
        assert!(a.done());
        assert_eq!(a.into_values(), values);
    }

    #[test]
    fn a_part_of_another_shape_is_refused() {
        let values = vec![1.0f32; 100];
        let split = parts(PartKind::Grad, 1, 0, "n1", &values, 30);
        let mut a = Assembler::for_part(&split[0]).expect("a valid part");
        let other = parts(PartKind::Grad, 1, 0, "n1", &vec![1.0f32; 101], 30);
        assert!(!a.put(&other[1]));
        assert!(a.put(&split[1]));
        assert!(!a.done());
    }
}
