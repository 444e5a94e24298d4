-- The dashboard's throughput chart counts attempts ended per minute over
-- the last hour: an index keeps that a range scan as history grows.
CREATE INDEX attempts_by_end ON attempts (ended_at) WHERE ended_at IS NOT NULL;
