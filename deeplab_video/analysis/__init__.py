"""Analysis tools of the paper's supplement that run a model over evaluation videos:
Table 2's matching-space sizes (`matching_space`) and Fig. 1's mean mask centre per query
(`query_centres`)."""
