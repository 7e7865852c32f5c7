-- _sort=priority and _sort=-priority over Communications other than one
-- recipient's sorted every Communication the search matched by the rank
-- of its priority: 0.9 to 3.4 s for the first page of the open ones
-- among a million on PostgreSQL (0.2 ms with these indexes). They hold
-- the Communications in each order, routine to stat and stat to
-- routine, those without a priority last in both, each priority's newest
-- first; the search's ORDER BY repeats their expressions
-- (store.CommunicationQuery.SQL).
--
-- One recipient's inbox is read from its deliveries and sorts its own.
--
-- Each is one more entry for every Communication written: PostgreSQL's
-- CPU per create was about 4 % higher with both (six interleaved pairs
-- of creates, README). Building them holds Communication writes while
-- it runs: 19 s for a million on a two-core test machine.
CREATE INDEX communication_rank ON communication (
	(CASE priority WHEN 'routine' THEN 0 WHEN 'urgent' THEN 1 WHEN 'asap' THEN 2 WHEN 'stat' THEN 3 ELSE 4 END), sent DESC, id DESC);
CREATE INDEX communication_rank_desc ON communication (
	(CASE priority WHEN 'stat' THEN 0 WHEN 'asap' THEN 1 WHEN 'urgent' THEN 2 WHEN 'routine' THEN 3 ELSE 4 END), sent DESC, id DESC);
