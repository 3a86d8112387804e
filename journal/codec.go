package journal

import "encoding/json"

// Codec turns items into the bytes a Store keeps, and back. Encode appends
// v's encoding to dst and returns the extended slice (as strconv.AppendInt
// does); Decode parses what Encode made. An item Encode fails on is refused
// (Add returns the error); a record Decode fails on is dead-lettered (see
// Config.DeadLetter). A Codec is used concurrently, from every producer.
type Codec[T any] interface {
	Encode(dst []byte, v T) ([]byte, error)
	Decode(data []byte) (T, error)
}

// JSON returns a Codec that uses encoding/json: fields must be exported to
// be kept. A codec of your own (protobuf, a fixed binary layout) is faster.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	if len(dst) == 0 {
		return b, nil
	}
	return append(dst, b...), nil
}

func (jsonCodec[T]) Decode(data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}
