//! Decoding a closure's value with bounds: the frame is the closure's to
//! write (it may write one itself, on its result channel), and postcard
//! decodes whatever a type allows, as deep and as long as the bytes say.
//! Two shapes would harm the test process: a value nested deeper than its
//! thread's stack holds (each level one byte: `Some(Some(...))`, a list of
//! boxes), which overflows the stack and kills the process, and a sequence
//! of zero-sized elements (`Vec<()>`), which takes no bytes an element, so
//! that an 11-byte frame asks for 2^63 of them and the decoding never ends.
//!
//! [`from_bytes`] wraps postcard's deserializer in one that counts how deep
//! the value nests (at most [`MAX_DEPTH`] levels, as `serde_json` allows
//! 128) and how many elements and entries it has in all (at most one a
//! byte of the frame, plus [`MAX_EMPTY_ELEMENTS`]), and fails beyond.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::de::{DeserializeOwned, VariantAccess};

/// The deepest a value may nest.
pub(crate) const MAX_DEPTH: u32 = 128;

/// How many elements and entries a value may have beyond one a byte of its
/// frame: room for zero-sized ones (`()`, unit structs).
pub(crate) const MAX_EMPTY_ELEMENTS: u64 = 1 << 20;

/// What is left of the bounds, shared by every part of one decoding.
struct Budget {
    depth: Cell<u32>,
    elements: Cell<u64>,
    /// Which bound was reached (postcard keeps no message of an error
    /// made by `de::Error::custom`).
    reached: Cell<Option<&'static str>>,
}

impl Budget {
    fn element<E: de::Error>(&self) -> Result<(), E> {
        match self.elements.get().checked_sub(1) {
            Some(left) => {
                self.elements.set(left);
                Ok(())
            }
            None => Err(self.reach("it has more elements than its frame has bytes, by over 2^20")),
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(self.reach("it nests deeper than 128 levels"));
        }
        self.depth.set(depth);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }

    /// `visit`, one level deeper.
    fn nested<T, E: de::Error>(&self, visit: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.enter()?;
        let value = visit();
        self.leave();
        value
    }

    fn reach<E: de::Error>(&self, what: &'static str) -> E {
        self.reached.set(Some(what));
        E::custom(what)
    }
}

/// Decodes `bytes` (postcard) as a `T`, within the bounds of the module;
/// `Err` says why not.
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let budget = Budget {
        depth: Cell::new(0),
        elements: Cell::new((bytes.len() as u64).saturating_add(MAX_EMPTY_ELEMENTS)),
        reached: Cell::new(None),
    };
    let mut postcard = postcard::Deserializer::from_bytes(bytes);
    T::deserialize(Bounded {
        de: &mut postcard,
        budget: &budget,
    })
    .map_err(|e| match budget.reached.get() {
        Some(what) => format!("refused: {what}"),
        None => e.to_string(),
    })
}

/// A deserializer within `budget`.
struct Bounded<'b, D> {
    de: D,
    budget: &'b Budget,
}

/// A visitor whose nested parts stay within `budget`.
struct Within<'b, V> {
    visitor: V,
    budget: &'b Budget,
}

/// Each `deserialize_*` of the wrapped deserializer, its visitor wrapped.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.de.$method($($arg,)* Within { visitor, budget: self.budget })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_seq(); deserialize_map();
        deserialize_identifier(); deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Each `visit_*` of a value with no parts, passed on as it is.
macro_rules! pass {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.visitor.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Within<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    pass! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
        visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        visit_bytes(&[u8]); visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget;
        budget.nested(|| self.visitor.visit_some(Bounded { de, budget }))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget;
        budget.nested(|| self.visitor.visit_newtype_struct(Bounded { de, budget }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| self.visitor.visit_seq(Bounded { de: seq, budget }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| self.visitor.visit_map(Bounded { de: map, budget }))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| self.visitor.visit_enum(Bounded { de: data, budget }))
    }
}

/// A seed whose value stays within `budget`.
struct Seed<'b, S> {
    seed: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Bounded {
            de,
            budget: self.budget,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.budget.element()?;
        self.de.next_element_seed(Seed {
            seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.de.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.budget.element()?;
        self.de.next_key_seed(Seed {
            seed,
            budget: self.budget,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.de.next_value_seed(Seed {
            seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.de.size_hint()
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Bounded<'b, A> {
    type Error = A::Error;
    type Variant = Bounded<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.de.variant_seed(Seed {
            seed,
            budget: self.budget,
        })?;
        Ok((
            value,
            Bounded {
                de: variant,
                budget: self.budget,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.de.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.de.newtype_variant_seed(Seed {
            seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.de.tuple_variant(
            len,
            Within {
                visitor,
                budget: self.budget,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.de.struct_variant(
            fields,
            Within {
                visitor,
                budget: self.budget,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    enum Nested {
        Leaf,
        Node(Box<Nested>),
    }

    fn nested(depth: usize) -> Nested {
        (0..depth).fold(Nested::Leaf, |n, _| Nested::Node(Box::new(n)))
    }

    #[test]
    fn ordinary_values_decode_as_postcard_decodes_them() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct S {
            a: u32,
            b: Option<String>,
            c: Vec<(u8, i64)>,
            d: std::collections::BTreeMap<String, Vec<u8>>,
            e: Nested,
            f: Vec<()>,
        }
        let s = S {
            a: 7,
            b: Some("x".into()),
            c: vec![(1, -2), (3, 4)],
            d: [("k".to_owned(), vec![1, 2, 3])].into(),
            e: nested(50),
            f: vec![(); 1000],
        };
        let bytes = postcard::to_stdvec(&s).unwrap();
        assert_eq!(from_bytes::<S>(&bytes).unwrap(), s);
    }

    #[test]
    fn a_value_nested_deeper_than_the_bound_is_refused_however_deep() {
        let ok = postcard::to_stdvec(&nested(MAX_DEPTH as usize - 1)).unwrap();
        assert!(from_bytes::<Nested>(&ok).is_ok());
        // 200,000 levels, written as a closure would write its own frame
        // (no value that deep is made here: dropping it would recurse).
        let mut deep = vec![1u8; 200_000];
        deep.push(0);
        let err = from_bytes::<Nested>(&deep).unwrap_err();
        assert!(err.contains("deeper than 128"), "{err}");
    }

    #[test]
    fn a_sequence_of_empty_elements_longer_than_its_frame_allows_is_refused() {
        // The length 2^63 as a varint, and no element bytes.
        let mut frame = vec![0x80u8; 9];
        frame.push(0x01);
        let err = from_bytes::<Vec<()>>(&frame).unwrap_err();
        assert!(err.contains("more elements"), "{err}");
    }
}
