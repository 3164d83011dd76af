package runtime

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A checkpoint's task summary joins the truths in the task-keeping sink's
// token with the per-task operator state sizes.
func TestCheckpointTasks(t *testing.T) {
	op, _ := json.Marshal(taskOperatorState{Tasks: map[string][]byte{"logs/0": make([]byte, 10), "logs/1": make([]byte, 3)}})
	c := &Checkpoint{
		Operators: []ComponentState{{ID: "operators[1]/window", State: op}, {ID: "operators[2]/dedupe", State: []byte("WDDP binary")}},
		Sinks: []ComponentState{{ID: "sinks[0]/postgres", State: []byte(`{"v":1,"tasks":[{"task":"logs/0","offset":120,"generation":4,"owner":"weir-a"},{"task":"logs/1","offset":7,"generation":4,"owner":"weir-a"}]}`)},
			{ID: "sinks[1]/file", State: []byte(`{"files":[]}`)}},
	}
	want := []TaskSummary{
		{Task: "logs/0", Offset: 120, Generation: 4, Owner: "weir-a", StateBytes: map[string]int{"operators[1]/window": 10}},
		{Task: "logs/1", Offset: 7, Generation: 4, Owner: "weir-a", StateBytes: map[string]int{"operators[1]/window": 3}},
	}
	if got := c.Tasks(); !reflect.DeepEqual(got, want) {
		t.Errorf("Tasks() = %+v\nwant %+v", got, want)
	}
	if got := (&Checkpoint{Sinks: []ComponentState{{ID: "s", State: []byte(`{"v":1}`)}}}).Tasks(); len(got) != 0 {
		t.Errorf("a checkpoint without tasks: %+v", got)
	}
}
