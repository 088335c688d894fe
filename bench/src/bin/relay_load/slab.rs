//! Slots by index, freed indices reused: the null relay's sockets live in slabs so that an
//! index can be the socket's epoll token.

pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The index the next [`Slab::insert`] takes (to register its socket first).
    pub fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Stores `v` at [`Slab::next_key`] and returns that index.
    pub fn insert(&mut self, v: T) -> usize {
        match self.free.pop() {
            Some(k) => {
                self.slots[k] = Some(v);
                k
            }
            None => {
                self.slots.push(Some(v));
                self.slots.len() - 1
            }
        }
    }

    pub fn get(&self, k: usize) -> Option<&T> {
        self.slots.get(k).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, k: usize) -> Option<&mut T> {
        self.slots.get_mut(k).and_then(Option::as_mut)
    }

    /// Empties slot `k` (dropping what it held) for reuse.
    pub fn remove(&mut self, k: usize) {
        if let Some(slot) = self.slots.get_mut(k) {
            if slot.take().is_some() {
                self.free.push(k);
            }
        }
    }

    /// How many slots hold something (for tests).
    #[cfg(test)]
    pub fn occupied(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn freed_indices_are_reused_and_next_key_is_what_insert_takes() {
        let mut s = Slab::new();
        assert_eq!(s.next_key(), 0);
        assert_eq!(s.insert('a'), 0);
        assert_eq!(s.insert('b'), 1);
        s.remove(0);
        s.remove(0); // twice: no double entry in the free list
        assert_eq!(s.occupied(), 1);
        assert_eq!(s.get(0), None);
        assert_eq!(s.next_key(), 0);
        assert_eq!(s.insert('c'), 0);
        assert_eq!(s.next_key(), 2);
        *s.get_mut(1).unwrap() = 'B';
        assert_eq!(
            (s.get(0), s.get(1), s.occupied()),
            (Some(&'c'), Some(&'B'), 2)
        );
    }
}
