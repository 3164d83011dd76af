package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weirhq/weir/pipeline"
)

// The PostgreSQL sink keeps task truths (pipeline.TaskStore) under
// exactly_once, in its tasks table (default weir_tasks):
//
//	pipeline, component, task   the key: the sink, and the input partition
//	generation, owner           who claimed the task last, in which group generation
//	next_offset                 where the task resumes (-1: claimed, never committed)
//	state                       the per-task operator states (JSON: operator id → bytes)
//
// A claim upserts the row with the claimer's generation and owner unless a
// later generation holds it, and returns the truth. A commit updates the
// row of each task it carries in the same transaction as the rows and the
// weir_commits record, only where the generation and owner are still the
// claim's and next_offset is still the offset this process last saw
// (the base): a zombie's commit, or one out of order, changes no row, and
// the whole transaction is rolled back with pipeline.ErrFenced.

// pgTaskCommit is one task's truth in a commit token.
type pgTaskCommit struct {
	Task       string            `json:"task"`
	Offset     int64             `json:"offset"`
	Base       int64             `json:"base"`
	Generation int64             `json:"generation"`
	Owner      string            `json:"owner"`
	States     map[string][]byte `json:"states,omitempty"`
}

// pgTasks is the sink's view of the tasks it claimed.
type pgTasks struct {
	mu      sync.Mutex
	created bool // the tasks table exists
	claims  map[string]pgTaskClaim
}

type pgTaskClaim struct {
	generation int64
	owner      string
	base       int64 // next_offset in the table as of our last claim or commit
}

// KeepsTasks implements pipeline.TaskStoreConfig: under exactly_once the
// sink keeps task truths.
func (c *PostgresConfig) KeepsTasks(g pipeline.Guarantee) bool { return g == pipeline.ExactlyOnce }

func (s *pgSink) createTasksTable(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.tasksTable+` (
		pipeline text NOT NULL, component text NOT NULL, task text NOT NULL,
		generation bigint NOT NULL, owner text NOT NULL, next_offset bigint NOT NULL,
		state jsonb, updated_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (pipeline, component, task))`)
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07")) { // created concurrently
		return fmt.Errorf("postgres: create %s: %w", s.tasksTable, err)
	}
	return nil
}

// ensureTasksTable creates the tasks table once, outside any transaction
// (a concurrent creation by another process fails a transaction).
func (s *pgSink) ensureTasksTable(ctx context.Context) error {
	s.tasks.mu.Lock()
	created := s.tasks.created
	s.tasks.mu.Unlock()
	if created {
		return nil
	}
	s.connMu.Lock()
	conn, err := s.connection(ctx)
	if err == nil {
		err = s.createTasksTable(ctx, conn)
	}
	s.connMu.Unlock()
	if err != nil {
		return err
	}
	s.tasks.mu.Lock()
	s.tasks.created = true
	s.tasks.mu.Unlock()
	return nil
}

// ClaimTask implements pipeline.TaskStore.
func (s *pgSink) ClaimTask(ctx context.Context, task string, f pipeline.Fence, owner string) (pipeline.Claim, error) {
	gen := f.Generation
	if s.stage == nil {
		return pipeline.Claim{}, errors.New("postgres: tasks outside exactly_once")
	}
	var (
		next  int64
		state map[string][]byte
		got   bool
	)
	if err := s.ensureTasksTable(ctx); err != nil {
		return pipeline.Claim{}, err
	}
	err := s.transact(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO `+s.tasksTable+` AS t (pipeline, component, task, generation, owner, next_offset)
			VALUES ($1, $2, $3, $4, $5, -1)
			ON CONFLICT (pipeline, component, task) DO UPDATE SET generation = EXCLUDED.generation, owner = EXCLUDED.owner, updated_at = now()
			WHERE t.generation <= EXCLUDED.generation
			RETURNING next_offset, state`, s.pipeline, s.component, task, gen, owner)
		if err != nil {
			return fmt.Errorf("postgres: claim task %s in %s: %w", task, s.tasksTable, err)
		}
		defer rows.Close()
		got = false
		for rows.Next() {
			got = true
			if err := rows.Scan(&next, &state); err != nil {
				return fmt.Errorf("postgres: task %s in %s is not a weir task row (%w); was the table written by another program or version?", task, s.tasksTable, err)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return pipeline.Claim{}, err
	}
	if !got {
		return pipeline.Claim{}, fmt.Errorf("postgres: task %s in %s: %w (this process is in generation %d)", task, s.tasksTable, pipeline.ErrFenced, gen)
	}
	s.tasks.mu.Lock()
	if s.tasks.claims == nil {
		s.tasks.claims = map[string]pgTaskClaim{}
	}
	s.tasks.claims[task] = pgTaskClaim{generation: gen, owner: owner, base: next}
	s.tasks.mu.Unlock()
	c := pipeline.Claim{Generation: gen, Found: next >= 0, TaskState: pipeline.TaskState{Task: task, Offset: next, States: state}}
	return c, nil
}

// PreCommitTasks implements pipeline.TaskStore: PreCommit, with each
// task's truth and the claim it is guarded by in the token.
func (s *pgSink) PreCommitTasks(ctx context.Context, checkpoint uint64, tasks []pipeline.TaskState) ([]byte, error) {
	t, err := s.seal(checkpoint)
	if err != nil {
		return nil, err
	}
	s.tasks.mu.Lock()
	for _, ts := range tasks {
		c, ok := s.tasks.claims[ts.Task]
		if !ok {
			s.tasks.mu.Unlock()
			return nil, fmt.Errorf("postgres: task %s was never claimed by this process", ts.Task)
		}
		t.Tasks = append(t.Tasks, pgTaskCommit{Task: ts.Task, Offset: ts.Offset, Base: c.base,
			Generation: c.generation, Owner: c.owner, States: ts.States})
		c.base = ts.Offset
		s.tasks.claims[ts.Task] = c
	}
	// A claim of a task handed back stays (one per partition at most): a
	// claim made while this checkpoint was on its way is not in tasks yet,
	// and a later claim of the task replaces it.
	s.tasks.mu.Unlock()
	return s.marshalToken(t)
}

// commitTasks updates the tasks' rows inside a commit transaction; it
// fails with pipeline.ErrFenced when a task's row is no longer the claim's.
func (s *pgSink) commitTasks(ctx context.Context, tx pgx.Tx, t stageToken) error {
	for _, tc := range t.Tasks {
		var state any
		if len(tc.States) > 0 {
			state = tc.States
		}
		tag, err := tx.Exec(ctx, `UPDATE `+s.tasksTable+` SET next_offset = $1, state = $2, updated_at = now()
			WHERE pipeline = $3 AND component = $4 AND task = $5 AND generation = $6 AND owner = $7 AND next_offset = $8`,
			tc.Offset, state, s.pipeline, s.component, tc.Task, tc.Generation, tc.Owner, tc.Base)
		if err != nil {
			return fmt.Errorf("postgres: update task %s in %s: %w", tc.Task, s.tasksTable, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("postgres: commit checkpoint %d: task %s (generation %d, from offset %d): %w",
				t.Checkpoint, tc.Task, tc.Generation, tc.Base, pipeline.ErrFenced)
		}
	}
	return nil
}
