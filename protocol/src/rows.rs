use bytes::{BufMut, Bytes, BytesMut};

/// A batch of result rows held as consecutive Postgres `DataRow` messages
/// (`'D'`, length, field count, fields), ready to be written to a client as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataRows {
    bytes: Bytes,
    count: usize,
}

impl DataRows {
    /// The encoded messages and how many rows they hold.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Wraps bytes the caller promises hold `count` whole `DataRow` messages.
    pub fn from_encoded(bytes: Bytes, count: usize) -> DataRows {
        DataRows { bytes, count }
    }

    /// Splits off the first `n` rows (all of them if there are fewer).
    pub fn split_first(&mut self, n: usize) -> DataRows {
        if n >= self.count {
            return std::mem::take(self);
        }
        let mut offset = 0;
        for _ in 0..n {
            offset += 1 + message_body_len(&self.bytes[offset..]);
        }
        let head = self.bytes.split_to(offset);
        self.count -= n;
        DataRows {
            bytes: head,
            count: n,
        }
    }

    /// Iterates the rows, each as its field values (`None` = NULL).
    pub fn iter(&self) -> RowsIter<'_> {
        RowsIter { rest: &self.bytes }
    }
}

fn message_body_len(message: &[u8]) -> usize {
    u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize
}

/// Iterator over the rows of a [`DataRows`] batch.
pub struct RowsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = Vec<Option<&'a [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 7 {
            return None;
        }
        let total = 1 + message_body_len(self.rest);
        let (message, rest) = self.rest.split_at(total.min(self.rest.len()));
        self.rest = rest;
        let fields = i16::from_be_bytes([message[5], message[6]]).max(0) as usize;
        let mut values = Vec::with_capacity(fields);
        let mut at = 7;
        for _ in 0..fields {
            let Some(len_bytes) = message.get(at..at + 4) else {
                break;
            };
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            at += 4;
            if len < 0 {
                values.push(None);
            } else {
                let end = at + len as usize;
                values.push(message.get(at..end));
                at = end;
            }
        }
        Some(values)
    }
}

/// Builds a [`DataRows`] batch one row at a time without an allocation per row.
#[derive(Debug, Default)]
pub struct DataRowsBuilder {
    buf: BytesMut,
    count: usize,
    row_start: usize,
    fields: i16,
}

impl DataRowsBuilder {
    pub fn with_capacity(bytes: usize) -> DataRowsBuilder {
        DataRowsBuilder {
            buf: BytesMut::with_capacity(bytes),
            ..DataRowsBuilder::default()
        }
    }

    /// Starts a new row; finish it with [`DataRowsBuilder::end_row`].
    pub fn begin_row(&mut self) {
        self.row_start = self.buf.len();
        self.fields = 0;
        self.buf.put_u8(b'D');
        self.buf.put_u32(0);
        self.buf.put_i16(0);
    }

    pub fn push_null(&mut self) {
        self.buf.put_i32(-1);
        self.fields += 1;
    }

    pub fn push_value(&mut self, value: &[u8]) {
        self.buf.put_i32(value.len() as i32);
        self.buf.put_slice(value);
        self.fields += 1;
    }

    /// Appends a value written in place by `write`, avoiding a temporary buffer.
    pub fn push_with(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let len_at = self.buf.len();
        self.buf.put_i32(0);
        write(&mut self.buf);
        let len = (self.buf.len() - len_at - 4) as i32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        self.fields += 1;
    }

    pub fn end_row(&mut self) {
        let len = (self.buf.len() - self.row_start - 1) as u32;
        self.buf[self.row_start + 1..self.row_start + 5].copy_from_slice(&len.to_be_bytes());
        self.buf[self.row_start + 5..self.row_start + 7]
            .copy_from_slice(&self.fields.to_be_bytes());
        self.count += 1;
    }

    pub fn row_count(&self) -> usize {
        self.count
    }

    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Takes the rows built so far, leaving the builder empty for the next batch.
    pub fn take(&mut self) -> DataRows {
        let count = std::mem::take(&mut self.count);
        DataRows {
            bytes: self.buf.split().freeze(),
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[&[Option<&str>]]) -> DataRows {
        let mut builder = DataRowsBuilder::default();
        for row in rows {
            builder.begin_row();
            for value in *row {
                match value {
                    Some(v) => builder.push_value(v.as_bytes()),
                    None => builder.push_null(),
                }
            }
            builder.end_row();
        }
        builder.take()
    }

    #[test]
    fn rows_round_trip_through_builder_and_iterator() {
        let rows = batch(&[&[Some("1"), None], &[Some("22"), Some("")]]);
        assert_eq!(rows.len(), 2);
        let decoded: Vec<_> = rows.iter().collect();
        assert_eq!(decoded[0], vec![Some(&b"1"[..]), None]);
        assert_eq!(decoded[1], vec![Some(&b"22"[..]), Some(&b""[..])]);
    }

    #[test]
    fn split_first_keeps_row_boundaries() {
        let mut rows = batch(&[&[Some("a")], &[Some("bb")], &[Some("ccc")]]);
        let head = rows.split_first(2);
        assert_eq!(head.len(), 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows.iter().next(), Some(vec![Some(&b"ccc"[..])]));
        let rest = rows.split_first(5);
        assert_eq!(rest.len(), 1);
        assert!(rows.is_empty());
    }

    #[test]
    fn push_with_writes_length_prefix() {
        let mut builder = DataRowsBuilder::default();
        builder.begin_row();
        builder.push_with(|buf| buf.put_slice(b"xyz"));
        builder.end_row();
        let rows = builder.take();
        assert_eq!(rows.iter().next(), Some(vec![Some(&b"xyz"[..])]));
    }
}
