/* ais_entity.h — AIS messages as entity updates (docs/ADAPTERS.md "AIS"): what the adapter
 * keeps of each vessel so that every update carries its whole attributes. */
#ifndef KZ_AIS_ENTITY_H
#define KZ_AIS_ENTITY_H

#include "adapters/ais.h"

enum { AIS_V_SHIPTYPE = 1, AIS_V_DIMS = 2, AIS_V_VOYAGE = 4, AIS_V_STATUS = 8, AIS_V_HEADING = 16, AIS_V_AID = 32,
       AIS_V_BASE = 64 };

struct ais_vessel {
	uint32_t mmsi;               /* 0: a free slot */
	uint32_t imo;
	uint16_t to_bow, to_stern, heading, draught10;
	uint8_t to_port, to_starboard, shiptype, status, has;
	char name[36], callsign[8], destination[21], eta[16];
};

struct ais_vessels {
	struct ais_vessel *slot;
	size_t cap, n, max;
	uint64_t restarts;           /* times the table was full and started over */
};

int ais_vessels_init(struct ais_vessels *v, uint32_t max_vessels);
void ais_vessels_free(struct ais_vessels *v);

/* Appends the entity update of m (JSON for kz/entity/<id>, id "mmsi:<n>") to b, learning
 * m's static data first. sensor: provenance.sensor (NULL: none). KZ_EINVAL for MMSI 0. */
int ais_entity_update(struct ais_vessels *v, const struct ais_msg *m, const char *sensor, struct kz_buf *b,
		      char id[32]);

#endif
