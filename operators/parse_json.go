package operators

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The JSON format is parsed by pipeline.Fields.ParseJSONObject: one
// validating pass, then the top-level fields are kept as raw bytes and
// decoded only when read, so a record costs no allocation here and an
// operator chain that reads two fields of twenty pays for two.

// describeJSONError says why data, which the lazy parser refused, is not
// one JSON object, and where. It runs only for bad records, so it may use
// encoding/json, whose syntax errors carry an offset.
func describeJSONError(data []byte) error {
	if len(strings.TrimSpace(parseAlias(data))) == 0 {
		return errParseEmptyLine
	}
	var raw json.RawMessage
	err := json.Unmarshal(data, &raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := se.Offset
		if strings.HasPrefix(se.Error(), "invalid character") && off > 0 {
			off-- // Offset counts the bytes read, the bad one included
		}
		return fmt.Errorf("%s at offset %d", se.Error(), off)
	}
	if err == nil {
		switch jsonFirstByte(data) {
		case '[':
			return errors.New("value is an array, not an object")
		case '"':
			return errors.New("value is a string, not an object")
		case 't', 'f':
			return errors.New("value is a boolean, not an object")
		case 'n':
			return errors.New("value is null, not an object")
		case '{':
		default:
			return errors.New("value is a number, not an object")
		}
	}
	return errors.New("invalid JSON object")
}

func jsonFirstByte(data []byte) byte {
	for _, c := range data {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}
