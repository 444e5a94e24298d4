-- A code package's cap: the most of its jobs that run at once (NULL: none).
ALTER TABLE code_packages ADD COLUMN max_concurrency INTEGER;
