/*-------------------------------------------------------------------------
 *
 * databases.h
 *	  The databases the workers serve and their slots (see databases.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_DATABASES_H
#define OUTBOX_DATABASES_H

#include "utils/guc.h"

/*
 * Longest outbox.slot_name: the slot names made from it (with several
 * databases, or before they changed) add up to 10 bytes and must fit in
 * NAMEDATALEN.
 */
#define OUTBOX_SLOT_NAME_MAXLEN	(NAMEDATALEN - 1 - 10)

extern char *outbox_database;
extern char *outbox_databases;

/* Check hooks of outbox.slot_name and outbox.databases */
extern bool outbox_check_slot_name(char **newval, void **extra,
								   GucSource source);
extern bool outbox_check_databases(char **newval, void **extra,
								   GucSource source);

extern void outbox_load_databases(void);
extern int	outbox_database_count(void);
extern const char *outbox_database_name(int i);
extern const char *outbox_database_slot(int i);
extern const char *outbox_database_previous_slot(int i);
extern const char *outbox_database_tag(int i);

#endif							/* OUTBOX_DATABASES_H */
