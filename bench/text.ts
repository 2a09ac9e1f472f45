/**
 * Text for chunks, messages and full-text queries, drawn from a vocabulary with a Zipf
 * distribution (rank r has weight 1/r^1.07, as in natural language): a few hundred real English
 * words at the top, stop words among them, then made-up words from syllables. Each embedding
 * cluster also has a topic: a few dozen content words that its chunks use more often, so that the
 * full-text leg and the vector leg of hybridSearch agree about what a document is about.
 */
import { pick, weightedSampler, zipfWeights, type Random } from './random.ts';

const COMMON = `the of and to a in is it you that he was for on are with as i his they be at one have
this from or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form sentence great
think say help low line differ turn cause much mean before move right boy old too same tell does set three
want air well also play small end put home read hand port large spell add even land here must big high such
follow act why ask men change went light kind off need house picture try us again animal point mother world
near build self earth father head stand own page should country found answer school grow study still learn
plant cover food sun four between state keep eye never last let thought city tree cross farm hard start
might story saw far sea draw left late run while press close night real life few north open seem together
next white children begin got walk example ease paper group always music those both mark often letter until
mile river car feet care second book carry took science eat room friend began idea fish mountain stop once
base hear horse cut sure watch color face wood main enough plain girl usual young ready above ever red list
though feel talk bird soon body dog family direct pose leave song measure door product black short numeral
class wind question happen complete ship area half rock order fire south problem piece told knew pass since
top whole king space heard best hour better true during hundred five remember step early hold west ground
interest reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern pull cold notice voice
unit power town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest
correct able pound done beauty drive stood contain front teach week final gave green quick develop ocean
warm free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay
wheel full force blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire
bring yes distant fill east paint language among`.split(/\s+/);

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'ta', 'vo', 'shi', 'pe', 'dra', 'gon', 'lin', 'mar', 'tis', 'bel', 'cor', 'fen', 'gar', 'hol', 'jun', 'qua', 'zer', 'ix', 'ost', 'ume', 'ply'];

/** Text generators over one seeded vocabulary. */
export interface Texts {
  vocabulary: readonly string[];
  /** `words` words of topic `cluster` (a quarter from its topic words, the rest from the whole vocabulary). */
  chunk(random: Random, cluster: number, words: number): string;
  /** A chat message of `words` words, no topic. */
  message(random: Random, words: number): string;
  /** A search query: two or three of the topic's most characteristic words. */
  query(random: Random, cluster: number): string;
}

/** A vocabulary of `size` words (Zipf, s = 1.07) and `clusters` topics of 40 content words each. */
export function makeTexts(random: Random, options: { size?: number; clusters: number }): Texts {
  const size = options.size ?? 8000;
  const seen = new Set<string>(COMMON);
  const vocabulary = [...COMMON];
  while (vocabulary.length < size) {
    let word = '';
    const syllables = 2 + Math.floor(random() * 3);
    for (let i = 0; i < syllables; i += 1) word += pick(random, SYLLABLES);
    if (!seen.has(word)) {
      seen.add(word);
      vocabulary.push(word);
    }
  }
  const global = weightedSampler(zipfWeights(vocabulary.length, 1.07));
  // Topic words: content words from past the head of the distribution, 40 per cluster.
  const topics = Array.from({ length: options.clusters }, () =>
    Array.from({ length: 40 }, () => vocabulary[COMMON.length + Math.floor(random() * (vocabulary.length - COMMON.length))]!),
  );
  const topical = weightedSampler(zipfWeights(40, 1));
  const words = (r: Random, n: number, cluster: number | undefined) => {
    const out = new Array<string>(n);
    for (let i = 0; i < n; i += 1) {
      out[i] = cluster !== undefined && r() < 0.25 ? topics[cluster % topics.length]![topical(r)]! : vocabulary[global(r)]!;
    }
    return out.join(' ');
  };
  return {
    vocabulary,
    chunk: (r, cluster, n) => words(r, n, cluster),
    message: (r, n) => words(r, n, undefined),
    query: (r, cluster) => {
      const topic = topics[cluster % topics.length]!;
      const n = 2 + Math.floor(r() * 2);
      const chosen = new Set<string>();
      while (chosen.size < n) chosen.add(topic[Math.floor(r() * 8)]!);
      return [...chosen].join(' ');
    },
  };
}
